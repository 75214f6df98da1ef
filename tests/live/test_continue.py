"""``antiphon continue`` on real MIDI files, through onnxruntime."""

from __future__ import annotations

import resource
import signal
import struct
import subprocess
import sys

import mido
import pytest

from antiphon.live.continuation import ContinueOptions, continue_file
from antiphon.live.sampling import Sampling
from antiphon.models.midi.notes import Grid, read_performance
from antiphon.models.midi.tokenizer import Tokenizer


def note_ons(track: mido.MidiTrack) -> int:
    return sum(m.type == "note_on" and m.velocity > 0 for m in track)


def test_output_keeps_the_prompt_and_appends_notes_after_it(tiny_onnx, chorale, tmp_path) -> None:
    out = tmp_path / "out.mid"
    (r,) = continue_file(
        chorale, out, tiny_onnx, ContinueOptions(seconds=30, sampling=Sampling(seed=7))
    )
    src, res = mido.MidiFile(chorale), mido.MidiFile(out)
    assert len(res.tracks) == len(src.tracks) + 1
    for a, b in zip(src.tracks, res.tracks):
        assert list(a) == list(b)  # the input, untouched
    added = res.tracks[-1]
    assert r.notes == note_ons(added) > 0
    # every new note starts at or after the end of the prompt
    prompt_end = (
        max(n.end for n in read_performance(chorale, Grid(tpq=8)).notes) / 8 * src.ticks_per_beat
    )
    tick, first_on = 0, None
    for m in added:
        tick += m.time
        if m.type == "note_on" and first_on is None:
            first_on = tick
    assert first_on is not None and first_on >= prompt_end - 1
    # and every note-on has its note-off
    assert sum(m.type == "note_off" for m in added) == note_ons(added)
    # the prompt is longer than the tiny model's 96-token window: its recent part was kept
    assert len(Tokenizer.create().encode_file(chorale)) > 96 and r.prompt_ticks > 0


def test_a_fixed_seed_gives_the_same_file_and_other_seeds_differ(
    tiny_onnx, palestrina, tmp_path
) -> None:
    def run(seed: int, name: str) -> bytes:
        continue_file(
            palestrina,
            tmp_path / name,
            tiny_onnx,
            ContinueOptions(seconds=20, sampling=Sampling(seed=seed)),
        )
        return (tmp_path / name).read_bytes()

    assert run(3, "a.mid") == run(3, "b.mid")
    assert run(3, "c.mid") != run(4, "d.mid")


def test_variations_and_bars(tiny_onnx, expressive, tmp_path) -> None:
    results = continue_file(
        expressive,
        tmp_path / "v.mid",
        tiny_onnx,
        ContinueOptions(bars=4, variations=3, sampling=Sampling(seed=1)),
    )
    assert [r.path.name for r in results] == ["v-1.mid", "v-2.mid", "v-3.mid"]
    assert all(abs(r.seconds - 8.0) < 1e-6 for r in results)  # 4 bars of 4/4 at 120 bpm
    assert len({r.path.read_bytes() for r in results}) == 3


def test_greedy_continuation_is_deterministic_without_seed(tiny_onnx, chorale, tmp_path) -> None:
    opts = ContinueOptions(seconds=10, sampling=Sampling(temperature=0))
    continue_file(chorale, tmp_path / "g1.mid", tiny_onnx, opts)
    continue_file(chorale, tmp_path / "g2.mid", tiny_onnx, opts)
    assert (tmp_path / "g1.mid").read_bytes() == (tmp_path / "g2.mid").read_bytes()


@pytest.mark.parametrize("bad", [dict(seconds=-1), dict(bars=0), dict(variations=0)])
def test_bad_lengths_are_user_errors(tiny_onnx, chorale, tmp_path, bad) -> None:
    from antiphon.errors import UserError

    with pytest.raises(UserError):
        continue_file(chorale, tmp_path / "x.mid", tiny_onnx, ContinueOptions(**bad))


# -- what a failed continuation leaves: the earlier take, byte for byte ---------------------
def _continue_cli(*args: str, preexec=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "antiphon", "continue", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=preexec)


def _smpte_copy(src, dst):
    data = bytearray(src.read_bytes())
    data[12:14] = struct.pack(">bB", -25, 40)  # division: 25 frames/s, 40 ticks per frame
    dst.write_bytes(bytes(data))
    return dst


def test_an_smpte_file_is_one_line_and_the_earlier_take_stays(tiny_onnx, chorale, tmp_path) -> None:
    take = tmp_path / "take.mid"
    continue_file(chorale, take, tiny_onnx, ContinueOptions(seconds=5))
    before = take.read_bytes()
    bad = _smpte_copy(chorale, tmp_path / "bad.mid")
    done = _continue_cli(str(bad), "-o", str(take), "--model", str(tiny_onnx))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert str(bad) in line and "SMPTE" in line and "Traceback" not in done.stderr
    assert take.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mid", "take.mid"]


def test_a_write_the_kernel_stops_part_way_leaves_the_earlier_take(
    tiny_onnx, chorale, tmp_path
) -> None:
    take = tmp_path / "take.mid"
    take.write_bytes(b"MThd" + b"\0" * 2000)  # an earlier file, larger than the limit below

    def small_files() -> None:  # the kernel refuses writes past 1 KiB: EFBIG, like ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    before = take.read_bytes()
    done = _continue_cli(
        str(chorale), "-o", str(take), "--model", str(tiny_onnx), preexec=small_files
    )
    assert done.returncode == 2, done.stderr[-1000:]
    [line] = done.stderr.strip().splitlines()
    assert f"{take}: cannot write the continuation (File too large)" in line
    assert "previous file is unchanged" in line
    assert take.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["take.mid"]
