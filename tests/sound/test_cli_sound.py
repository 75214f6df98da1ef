"""``antiphon render`` and ``antiphon continue --wav`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from antiphon.cli import main
from tests.sound.conftest import read_wav, rms


def test_render_writes_the_wav_and_says_so(
    chorale: Path, soundfont: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "chorale.wav"
    assert main(["render", str(chorale), "-o", str(out), "--soundfont", str(soundfont)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{out}: ") and "s of audio" in line and soundfont.name in line
    audio, rate = read_wav(out)
    assert rate == 44100 and rms(audio) > 0.005


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b"MThd\x00\x00\x00\x06\x00"])
def test_render_of_a_corrupt_file_is_one_line_and_exit_2(
    content: bytes, soundfont: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(content)
    assert main(["render", str(bad), "-o", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"antiphon: error: {bad}: ")
    assert not (tmp_path / "x.wav").exists()


def test_render_with_a_missing_soundfont_names_it(
    chorale: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.sf2"
    out = str(tmp_path / "x.wav")
    assert main(["render", str(chorale), "-o", out, "--soundfont", str(missing)]) == 2
    assert f"{missing}: no such SoundFont file" in capsys.readouterr().err


def test_continue_wav_writes_the_audio_beside_each_midi(
    chorale: Path, soundfont: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "more.mid"
    args = ["continue", str(chorale), "-o", str(out), "--seconds", "3", "--seed", "1"]
    assert main([*args, "--variations", "2", "--wav"]) == 0
    printed = capsys.readouterr().out
    for k in (1, 2):
        mid, wav = tmp_path / f"more-{k}.mid", tmp_path / f"more-{k}.wav"
        assert mid.is_file() and wav.is_file() and f"{wav}: " in printed
        import mido

        audio, rate = read_wav(wav)
        assert len(audio) / rate > mido.MidiFile(mid).length  # the whole file, and its tail


def test_continue_wav_without_a_soundfont_fails_before_the_model_runs(
    chorale: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "more.mid"
    missing = str(tmp_path / "nope.sf2")
    assert main(["continue", str(chorale), "-o", str(out), "--wav", "--soundfont", missing]) == 2
    assert "no such SoundFont" in capsys.readouterr().err
    assert not out.exists()
