from __future__ import annotations

import json
import math
from pathlib import Path

import mido
import numpy as np
import pytest

from antiphon.errors import UserError
from antiphon.models.metrics import (
    METRICS,
    Bar,
    bars_of,
    compare_dirs,
    measure_dir,
    measure_file,
)
from antiphon.models.overlap import (
    compare_sets,
    densities,
    density,
    kl_divergence,
    overlap_area,
    overlap_areas,
    set_distances,
    trapezoid_weights,
)
from antiphon.models.plots import plot_metric
from tests.synth import write_piece

TPB = 480
W = 96  # positions per 4/4 bar on the metric grid (24 ticks per quarter)


def write_midi(
    path: Path,
    notes: list[tuple[float, float, int]],
    signatures: list[tuple[float, int, int]] = (),
    channel: int = 0,
) -> Path:
    """A one-track MIDI file of (start beat, duration in beats, pitch) notes."""
    timed = [
        (round(b * TPB), 0, mido.MetaMessage("time_signature", numerator=n, denominator=d))
        for b, n, d in signatures
    ]
    for start, dur, pitch in notes:
        timed.append(
            (
                round(start * TPB),
                2,
                mido.Message("note_on", channel=channel, note=pitch, velocity=80),
            )
        )
        timed.append(
            (round((start + dur) * TPB), 1, mido.Message("note_off", channel=channel, note=pitch))
        )
    timed.sort(key=lambda e: (e[0], e[1]))
    mid = mido.MidiFile(ticks_per_beat=TPB)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    last = 0
    for at, _, msg in timed:
        track.append(msg.copy(time=at - last))
        last = at
    mid.save(path)
    return path


def metrics(tmp_path: Path, notes: list[tuple[float, float, int]], **kw: object) -> dict:
    return measure_file(write_midi(tmp_path / "x.mid", notes, **kw)).values  # type: ignore[arg-type]


# -- per-piece metrics on pieces with known answers ------------------------------------
def test_c_major_scale(tmp_path: Path) -> None:
    scale = [60, 62, 64, 65, 67, 69, 71]  # seven pitch classes, one beat each: 7 beats, 2 bars
    v = metrics(tmp_path, [(i, 1, p) for i, p in enumerate(scale)])
    assert v["pitch_class_entropy"] == pytest.approx(math.log2(7))  # bits
    assert v["pitch_range"] == 11 and v["pitch_count"] == 7
    assert v["polyphony"] == 1.0
    assert v["scale_consistency"] == 1.0
    assert v["note_density"] == pytest.approx(7 / 2)
    assert v["ioi_mean"] == 1.0 and v["ioi_std"] == 0.0
    assert v["groove_consistency"] == pytest.approx(1 - 1 / W)  # bar 2 lacks its 4th beat
    assert v["empty_bar_rate"] == 0.0


def test_one_note_per_beat_is_perfectly_groove_consistent(tmp_path: Path) -> None:
    v = metrics(tmp_path, [(i, 0.5, 60 + i % 3) for i in range(16)])
    assert v["groove_consistency"] == 1.0
    assert v["note_density"] == 4.0 and v["empty_bar_rate"] == 0.0
    assert v["polyphony"] == 1.0 and v["ioi_mean"] == 1.0


def test_empty_bars_are_counted_and_a_held_note_fills_its_bars(tmp_path: Path) -> None:
    v = metrics(tmp_path, [(0, 1, 60), (12, 1, 62)])  # bars 1 and 2 silent
    assert v["empty_bar_rate"] == 0.5
    # onset vectors: [x...], [], [], [x...]: Hamming 1, 0, 1 position(s) of 96
    assert v["groove_consistency"] == pytest.approx(1 - (2 / 3) / W)
    held = metrics(tmp_path, [(0, 8, 60), (12, 1, 62)])  # held through bar 1, bar 2 silent
    assert held["empty_bar_rate"] == 0.25
    # A note held for 40,000 beats: 10,000 bars, measured from segments without a dense roll.
    long = metrics(tmp_path, [(0, 1, 60), (0, 40_000, 48)])
    assert long["empty_bar_rate"] == 0.0 and long["note_density"] == 2 / 10_000
    assert long["polyphony"] == pytest.approx((2 * 1 + 39_999) / 40_000)


def test_polyphony_entropy_and_out_of_scale_notes(tmp_path: Path) -> None:
    triad_then_note = [(0, 4, 60), (0, 4, 64), (0, 4, 67), (4, 4, 72)]
    v = metrics(tmp_path, triad_then_note)
    assert v["polyphony"] == 2.0  # 3 notes for a bar, then 1 for a bar
    assert v["pitch_class_entropy"] == pytest.approx(1.5)  # C twice, E, G: 1/2, 1/4, 1/4
    chromatic = [(i, 1, p) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 61])]
    assert metrics(tmp_path, chromatic)["scale_consistency"] == pytest.approx(7 / 8)
    one = metrics(tmp_path, [(0, 1, 60), (1, 1, 72)])
    assert one["pitch_class_entropy"] == 0.0 and one["pitch_range"] == 12


def test_inter_onset_intervals_count_a_chord_once(tmp_path: Path) -> None:
    v = metrics(tmp_path, [(0, 1, 60), (0, 1, 64), (1, 0.5, 62), (1.5, 0.5, 65)])
    assert v["ioi_mean"] == pytest.approx(0.75) and v["ioi_std"] == pytest.approx(0.25)
    single = metrics(tmp_path, [(0, 1, 60), (0, 1, 64)])
    assert math.isnan(single["ioi_mean"]) and math.isnan(single["groove_consistency"])


def test_bars_follow_the_time_signature(tmp_path: Path) -> None:
    v = metrics(tmp_path, [(i, 1, 60) for i in range(6)], signatures=[(0, 3, 4)])
    assert v["note_density"] == 3.0 and v["groove_consistency"] == 1.0
    eighths = metrics(tmp_path, [(i * 1.5, 1, 60) for i in range(4)], signatures=[(0, 6, 8)])
    assert eighths["note_density"] == 2.0 and eighths["groove_consistency"] == 1.0


def test_bars_of_restarts_bars_at_a_change_inside_a_bar() -> None:
    # 4/4 from 0, 3/4 from beat 6 (inside bar 2, which is cut short there), 24 ticks a beat
    got = bars_of([(144, 3, 4)], end=300, tpq=24)
    assert got == [Bar(0, 96), Bar(96, 144), Bar(144, 216), Bar(216, 288), Bar(288, 360)]
    assert bars_of([], end=96, tpq=24) == [Bar(0, 96)]
    assert bars_of([(0, 2, 4), (0, 7, 8)], end=50, tpq=24) == [Bar(0, 84)]  # last one wins


def test_drums_are_not_pitched_notes(tmp_path: Path) -> None:
    path = tmp_path / "drums.mid"
    write_midi(path, [(0, 1, 36)], channel=9)
    from antiphon.models.midi.notes import MidiFileError

    with pytest.raises(MidiFileError):
        measure_file(path)


# -- kernel densities and overlapping areas --------------------------------------------
def test_identical_sets_overlap_fully_and_disjoint_sets_not_at_all() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(5, 1, 200)
    assert overlap_area(a, a) == pytest.approx(1.0, abs=1e-3)
    assert kl_divergence(a, a) == pytest.approx(0.0, abs=1e-6)
    assert overlap_area(a, a + 100) < 1e-6
    assert kl_divergence(a, a + 100) > 10


def test_overlap_of_two_normals_matches_theory() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 2000), rng.normal(1, 1, 2000)
    # OA of N(0,1), N(1,1) is 2 Φ(-1/2) = 0.617; Scott's kernel widens each to sd ≈ 1.02.
    expected = math.erfc(0.5 / 1.024 / math.sqrt(2))
    assert overlap_area(a, b) == pytest.approx(expected, abs=0.03)


def test_a_narrow_and_a_wide_set_both_integrate_to_one_on_the_shared_grid() -> None:
    rng = np.random.default_rng(3)
    narrow, wide = rng.normal(1, 1e-4, 100), rng.normal(0.7, 0.2, 100)
    x, pn, pw = densities(narrow, wide)
    w = trapezoid_weights(x)
    assert (pn * w).sum() == pytest.approx(1) and (pw * w).sum() == pytest.approx(1)
    # The spike sits where the wide density is ~0.7: it overlaps only over its own width.
    oa = overlap_area(narrow, wide)
    assert 0 < oa < 0.01 and oa == pytest.approx(overlap_area(wide, narrow))


def test_degenerate_sets() -> None:
    assert overlap_area([3, 3, 3], [3.0]) == 1.0
    assert overlap_area([3, 3], [4, 4]) == 0.0
    assert kl_divergence([3, 3], [4, 4]) == math.inf
    assert math.isnan(overlap_area([], [1, 2, 3]))
    assert math.isnan(overlap_area([math.nan], [1, 2, 3]))
    # A constant set is a kernel of the other set's bandwidth: it overlaps a set around it.
    spread = np.array([0.8, 0.9, 1.0, 1.0, 1.1, 1.2])
    inside, outside = overlap_area([1.0] * 5, spread), overlap_area([9.0] * 5, spread)
    assert 0.5 < inside < 1 and outside < 1e-6
    d = density([2.0, 2.0])
    assert d.kde is None and d.bandwidth == 0.0


def test_set_distances_of_like_and_unlike_sets(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    from antiphon.models.metrics import PieceMetrics

    def pieces(center: float, n: int) -> list[PieceMetrics]:
        hist = tuple([1 / 12] * 12)
        return [
            PieceMetrics(f"{i}", dict.fromkeys(METRICS, center + rng.normal(0, 1)), hist, 1, 1)
            for i in range(n)
        ]

    same = set_distances(pieces(0, 30), pieces(0, 30))
    apart = set_distances(pieces(0, 30), pieces(50, 30))
    for name in METRICS:
        assert same[name]["oa_generated"] > 0.8 and same[name]["kl_generated"] < 0.1
        assert apart[name]["oa_generated"] < 0.01 and apart[name]["kl_generated"] > 5
    # identical histograms: every distance is 0, intra and inter are the same spike
    assert same["pitch_class_histogram"]["oa_generated"] == 1.0
    assert overlap_areas(pieces(0, 30), pieces(0, 30)).keys() == METRICS.keys()


# -- folders, the report, plots --------------------------------------------------------
@pytest.fixture
def two_sets(tmp_path: Path) -> tuple[Path, Path]:
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    (ref / "sub").mkdir(parents=True)
    for i in range(4):
        write_piece(gen / f"g{i}.mid", seed=100 + i, bars=4)
        write_piece(ref / "sub" / f"r{i}.mid", seed=200 + i, bars=4)
    (gen / "broken.mid").write_bytes(b"MThd not really")
    write_midi(gen / "silent.mid", [])
    return gen, ref


def test_compare_dirs_end_to_end(two_sets: tuple[Path, Path], tmp_path: Path) -> None:
    gen, ref = two_sets
    report = compare_dirs(gen, ref, tmp_path / "plots")
    assert len(report.generated.pieces) == 4 and len(report.reference.pieces) == 4
    assert sorted(Path(p).name for p, _ in report.generated.skipped) == ["broken.mid", "silent.mid"]
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["generated"]["pieces"] == 4 and len(d["generated"]["skipped"]) == 2
    for name in METRICS:
        oa = d["metrics"][name]["oa"]
        assert 0.0 <= oa <= 1.0 and d["metrics"][name]["reference"]["n"] == 4
    assert d["mean_oa"] == pytest.approx(np.mean([d["metrics"][n]["oa"] for n in METRICS]))
    table = report.table()
    assert all(name in table for name in METRICS) and "mean OA" in table
    assert "2 unreadable skipped" in table
    assert len(report.plots) == len(METRICS) + 3
    for p in map(Path, report.plots):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_a_metric_undefined_everywhere_has_no_oa(tmp_path: Path) -> None:
    for side in ("gen", "ref"):
        (tmp_path / side).mkdir()
        for i in range(3):  # one-bar pieces: no groove consistency
            write_midi(tmp_path / side / f"{i}.mid", [(0, 1, 60 + i), (1, 1, 64)])
    report = compare_sets(measure_dir(tmp_path / "gen"), measure_dir(tmp_path / "ref"))
    assert math.isnan(report.oa["groove_consistency"])
    assert report.to_dict()["metrics"]["groove_consistency"]["oa"] is None
    assert "n/a" in report.table() and math.isfinite(report.mean_oa)
    png = plot_metric(report, "groove_consistency", tmp_path / "groove.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_missing_empty_and_unreadable_folders_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such directory"):
        measure_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no MIDI here")
    with pytest.raises(UserError, match=r"no \.mid or \.midi files"):
        measure_dir(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mid").write_bytes(b"junk")
    with pytest.raises(UserError, match="none of its 1 MIDI files could be read"):
        measure_dir(tmp_path / "bad")
