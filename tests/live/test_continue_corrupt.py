"""``antiphon continue`` on corrupt and odd MIDI files: one clear line, never a traceback or hang.

Thousands of files from a seeded generator (tests/live/fuzz_midi.py) go through the CLI's own
``main`` in one subprocess (tests/live/fuzz_runner.py), so that a crash, a hang or a memory blow-up
shows from outside. The rule for each file: either it is refused with exit code 2 and one line
on stderr naming the file, or (a file that is well formed and holds notes, however odd) it is
continued with one line on stdout and an output file that reads back with every note ended.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mido
import pytest

from antiphon.errors import UserError
from antiphon.live.continuation import MAX_DELTA, ContinueOptions, continue_file, write_continuation
from antiphon.live.shaping import NoteEvent
from antiphon.models.midi.notes import read_midi_file
from tests.live.fuzz_midi import NOTE, Smf, cases, meta

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261201
CASES = 2500
MEMORY_MB = 1536
# Kinds that leave no well-formed file with notes, and kinds that only make a file odd.
MUST_FAIL = {"empty", "header_only", "truncated", "no_notes", "system_bytes", "too_big"}
MUST_FAIL |= {"too_many_events", "many_tracks_32767", "many_tracks_65535"}
MUST_PASS = {"alien_chunk", "absurd_notes", "dense", "many_tracks_32766"}


@pytest.fixture(scope="module")
def fuzzed(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "cases"
    folder.mkdir()
    for i, (kind, data) in enumerate(cases(SEED, CASES, root)):
        (folder / f"{i:05d}-{kind}.mid").write_bytes(data)
    results = root / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.live.fuzz_runner", str(folder), str(results), str(tiny_onnx)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert proc.returncode == 0 and len(lines) % 2 == 0, (
        f"the runner died (rc {proc.returncode}) on {lines[-1].get('name')}: {proc.stderr[-2000:]}"
    )
    out = []
    for head, result in zip(lines[::2], lines[1::2]):
        name = head["name"]
        out.append({**result, "name": name, "kind": name[6:-4], "path": folder / name})
    return out


def problem(r: dict) -> str | None:
    """What is wrong with how ``continue`` answered one file, or None."""
    if r["escaped"]:
        return r["escaped"].strip().splitlines()[-1]
    if r["rc"] == 0:
        if r["stderr"] or len(r["stdout"].splitlines()) != 1:
            return f"succeeded, printing {r['stdout']!r} and {r['stderr']!r}"
        return f"wrote a bad file: {r['written']}" if r["written"] else None
    lines = r["stderr"].splitlines()
    if r["rc"] != 2 or r["stdout"] or len(lines) != 1 or "Traceback" in r["stderr"]:
        return f"exit {r['rc']}, stdout {r['stdout']!r}, stderr {r['stderr'][-300:]!r}"
    if not lines[0].startswith(f"antiphon: error: {r['path']}: "):
        return f"the line does not name the file: {lines[0]!r}"
    return None


def test_every_corrupt_file_gets_one_line_and_no_traceback(fuzzed: list[dict]) -> None:
    assert len(fuzzed) > CASES
    bad = [f"{r['name']}: {p}" for r in fuzzed if (p := problem(r))]
    assert not bad, f"{len(bad)} files went wrong, e.g.\n" + "\n".join(bad[:15])


def test_broken_files_are_refused_and_merely_odd_ones_continued(fuzzed: list[dict]) -> None:
    kinds = Counter(r["kind"] for r in fuzzed)
    refused = Counter(r["kind"] for r in fuzzed if r["rc"] != 0)
    assert {k for k in MUST_FAIL if refused[k] < kinds[k]} == set()
    assert {k for k in MUST_PASS if refused[k]} == set()
    assert len(kinds) >= 25 and 0.5 < sum(refused.values()) / len(fuzzed) < 0.95


def test_time_and_memory_stay_bounded(fuzzed: list[dict]) -> None:
    slowest = max(fuzzed, key=lambda r: r["seconds"])
    print(f"slowest: {slowest['name']} {slowest['seconds']:.2f} s")  # the deadline is 10 s
    assert max(r["rss_mb"] for r in fuzzed) < MEMORY_MB


def test_the_real_cli_prints_one_line_and_exits_non_zero(
    fuzzed: list[dict], tmp_path: Path
) -> None:
    # The slowest refusal of each of a dozen kinds, through `python -m antiphon` and its default
    # model, as a user runs it.
    worst: dict[str, dict] = {}
    for r in sorted(fuzzed, key=lambda r: r["seconds"]):
        if r["rc"] != 0:
            worst[r["kind"]] = r
    picked = sorted(worst.values(), key=lambda r: -r["seconds"])[:12]
    for r in picked:
        cmd = [sys.executable, "-m", "antiphon", "continue", str(r["path"]), "-o"]
        proc = subprocess.run(
            [*cmd, str(tmp_path / "out.mid"), "--seconds", "1"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and proc.stdout == "", r["name"]
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out.mid").exists()


# -- the causes the fuzzing found, one by one --------------------------------------------------
def write(tmp_path: Path, smf: Smf, name: str = "in.mid") -> Path:
    path = tmp_path / name
    path.write_bytes(smf.to_bytes())
    return path


@pytest.mark.parametrize("tempo", [b"\x00\x00\x00", b"\x00\x00\x01"])
def test_a_tempo_of_zero_or_one_microsecond_is_refused(tiny_onnx, tmp_path, tempo) -> None:
    path = write(tmp_path, Smf([[meta(0x51, tempo), *NOTE, meta(0x2F, b"")]]))
    with pytest.raises(UserError, match="tempo"):
        continue_file(path, tmp_path / "out.mid", tiny_onnx, ContinueOptions(seconds=1))


def test_bars_need_a_time_signature_with_bars(tiny_onnx, tmp_path) -> None:
    path = write(tmp_path, Smf([[meta(0x58, b"\x00\x02\x18\x08"), *NOTE, meta(0x2F, b"")]]))
    with pytest.raises(UserError, match="time signature 0/4"):
        continue_file(path, tmp_path / "out.mid", tiny_onnx, ContinueOptions(bars=1))


def test_a_continuation_later_than_one_delta_time_reads_back(tmp_path) -> None:
    mid = mido.MidiFile(ticks_per_beat=480)
    out = tmp_path / "out.mid"
    origin = 3 * MAX_DELTA / 480 + 0.5  # beats
    write_continuation(mid, [NoteEvent(0.0, 0.5, 60, 80)], out, origin, 120.0)
    tick = 0
    for msg in read_midi_file(out).tracks[-1]:  # it would refuse 5-byte delta times
        tick += msg.time
        if msg.type == "note_on":
            assert tick == round(origin * 480)


def test_at_one_tick_per_beat_every_note_ends_after_it_starts(tmp_path) -> None:
    out = tmp_path / "out.mid"
    notes = [NoteEvent(0.0, 0.01, 60, 80), NoteEvent(0.0, 0.2, 62, 80)]
    write_continuation(mido.MidiFile(ticks_per_beat=1), notes, out, 0.0, 120.0)
    order = [(m.type, m.note) for m in read_midi_file(out).tracks[-1] if m.type.startswith("note")]
    assert order.index(("note_on", 60)) < order.index(("note_off", 60))
    assert order.index(("note_on", 62)) < order.index(("note_off", 62))
