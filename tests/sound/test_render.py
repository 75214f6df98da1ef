"""``render_midi`` through the real FluidSynth and a real GM SoundFont: the audio is there,
starts where the MIDI does, follows tempo, programs, drums and the pedal, and ends cleanly."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from antiphon.errors import UserError
from antiphon.sound.render import TAIL_MAX_SECONDS, render_midi
from tests.sound.conftest import note, read_wav, rms, write_midi

RMS_FLOOR = 0.005  # about -46 dBFS: far above silence, far below any played note


def first_difference(a: np.ndarray, b: np.ndarray, threshold: float = 1e-3) -> int:
    """The first frame where two renders differ audibly (FluidSynth is deterministic, so
    before the one event they differ by, they are identical)."""
    n = max(len(a), len(b))
    a, b = (np.pad(x, ((0, n - len(x)), (0, 0))) for x in (a, b))
    diff = np.abs(a - b).max(axis=1)
    return int(np.argmax(diff > threshold)) if (diff > threshold).any() else -1


def test_a_chorale_renders_to_real_audio(chorale: Path, soundfont: Path, tmp_path: Path) -> None:
    result = render_midi(chorale, tmp_path / "c.wav", soundfont)
    audio, rate = read_wav(tmp_path / "c.wav")
    assert rate == 44100 and audio.shape[1] == 2
    assert len(audio) == result.frames
    assert rms(audio) > RMS_FLOOR and result.rms == pytest.approx(rms(audio), rel=1e-3)
    assert result.notes == sum(
        1 for m in mido.MidiFile(chorale) if m.type == "note_on" and m.velocity > 0
    )
    length = mido.MidiFile(chorale).length
    assert length < result.seconds < length + TAIL_MAX_SECONDS
    # Every second of the music sounds (a chorale has no rests across all four voices).
    per_second = [rms(audio[i * rate : (i + 1) * rate]) for i in range(int(length))]
    assert min(per_second) > RMS_FLOOR


def test_the_audio_starts_when_the_first_note_does(soundfont: Path, tmp_path: Path) -> None:
    # 60 bpm: beat 1.5 is 1.5 s in; nothing but silence may come before it.
    mid = write_midi(tmp_path / "late.mid", note(1.5, 1.0, 60), bpm=60)
    result = render_midi(mid, tmp_path / "late.wav", soundfont)
    audio, rate = read_wav(tmp_path / "late.wav")
    loud = np.abs(audio).max(axis=1) > 1e-3
    onset = int(np.argmax(loud)) / rate
    assert result.first_note == pytest.approx(1.5)
    assert 1.5 <= onset < 1.5 + 0.005
    assert not np.abs(audio[: int(1.5 * rate)]).any()  # digital silence before it


def test_tempo_changes_move_the_notes(soundfont: Path, tmp_path: Path) -> None:
    """At 60 bpm, then 240 from beat 2: a note on beat 4 sounds at 2 + 2 * 0.25 = 2.5 s."""
    change = [(2.0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(240)))]
    without = write_midi(tmp_path / "a.mid", [*note(0, 0.5, 60), *change], bpm=60)
    with_note = write_midi(tmp_path / "b.mid", [*note(0, 0.5, 60), *change, *note(4, 1, 67)], 60)
    render_midi(without, tmp_path / "a.wav", soundfont)
    render_midi(with_note, tmp_path / "b.wav", soundfont)
    (a, rate), (b, _) = read_wav(tmp_path / "a.wav"), read_wav(tmp_path / "b.wav")
    onset = first_difference(a, b) / rate
    # The font's own lead-in before the note sounds (TimGM6mb: 6-8 ms), from the same note
    # rendered at 0: what is checked is when the renderer starts it.
    alone = render_midi(
        write_midi(tmp_path / "c.mid", note(0, 1, 67), 60), tmp_path / "c.wav", soundfont
    )
    c, _ = read_wav(alone.path)
    lead = int(np.argmax(np.abs(c).max(axis=1) > 1e-3)) / rate
    assert lead < 0.05
    assert 2.5 + lead - 0.002 <= onset < 2.5 + lead + 0.002


def spectrum(audio: np.ndarray) -> np.ndarray:
    mono = audio.mean(axis=1)
    mag = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return mag / np.linalg.norm(mag)


def flatness(audio: np.ndarray) -> float:
    """Spectral flatness (geometric / arithmetic mean power): near 1 for noise, near 0 for
    a pitched tone."""
    power = np.abs(np.fft.rfft(audio.mean(axis=1) * np.hanning(len(audio))))[20:5000] ** 2
    power += 1e-20
    return float(np.exp(np.log(power).mean()) / power.mean())


def test_program_changes_change_the_sound(soundfont: Path, tmp_path: Path) -> None:
    melody = [e for i, p in enumerate([60, 64, 67, 72]) for e in note(i, 0.9, p)]

    def render(program: int, name: str) -> np.ndarray:
        prog = [(0.0, mido.Message("program_change", program=program))]
        mid = write_midi(tmp_path / f"{name}.mid", prog + melody)
        render_midi(mid, tmp_path / f"{name}.wav", soundfont)
        return read_wav(tmp_path / f"{name}.wav")[0][: 44100 * 2]

    piano, piano_again, flute = render(0, "p1"), render(0, "p2"), render(73, "fl")
    assert np.array_equal(piano, piano_again)  # the same program: the same samples
    same = float(spectrum(piano) @ spectrum(piano_again))
    other = float(spectrum(piano) @ spectrum(flute))
    assert same == pytest.approx(1.0)
    assert other < 0.8, f"flute and piano spectra are {other:.2f} alike"


def test_channel_10_plays_drums(soundfont: Path, tmp_path: Path) -> None:
    """Key 38 on channel 10 is the snare, not a D2 on the piano: noise, not a pitch."""
    drum = render_midi(
        write_midi(tmp_path / "d.mid", note(0, 0.5, 38, channel=9)), tmp_path / "d.wav", soundfont
    )
    piano = render_midi(
        write_midi(tmp_path / "p.mid", note(0, 0.5, 38, channel=0)), tmp_path / "p.wav", soundfont
    )
    assert drum.rms > RMS_FLOOR / 5 and piano.rms > RMS_FLOOR / 5
    d, p = read_wav(drum.path)[0][:22050], read_wav(piano.path)[0][:22050]
    assert float(spectrum(d) @ spectrum(p)) < 0.5
    assert flatness(d) > 100 * flatness(p)  # measured: 0.087 and 0.0001


def test_the_pedal_holds_notes_past_their_note_off(soundfont: Path, tmp_path: Path) -> None:
    short = note(0, 0.25, 60)  # at 120 bpm: off at 0.125 s
    pedal = [
        (0.0, mido.Message("control_change", control=64, value=127)),
        (4.0, mido.Message("control_change", control=64, value=0)),
    ]
    dry = render_midi(write_midi(tmp_path / "dry.mid", short), tmp_path / "dry.wav", soundfont)
    held = render_midi(
        write_midi(tmp_path / "held.mid", short + pedal), tmp_path / "held.wav", soundfont
    )
    (a, rate), (b, _) = read_wav(dry.path), read_wav(held.path)
    window = slice(int(0.6 * rate), int(1.0 * rate))
    assert rms(b[window]) > 10 * rms(a[window])
    assert held.seconds > 2.0 > dry.seconds


def test_the_tail_is_the_release_and_ends_quietly(soundfont: Path, tmp_path: Path) -> None:
    result = render_midi(write_midi(tmp_path / "t.mid", note(0, 1, 60)), tmp_path / "t.wav")
    audio, rate = read_wav(result.path)
    assert result.seconds > 0.5 + 0.05  # the release sounds after the note-off at 0.5 s
    assert np.abs(audio[-int(0.01 * rate) :]).max() < 1e-3  # no click at the end


def test_a_note_the_file_never_ends_is_released_at_its_end(soundfont: Path, tmp_path: Path):
    hanging = [(0.0, mido.Message("note_on", note=60, velocity=100))]
    hanging.append((2.0, mido.Message("control_change", control=7, value=100)))  # end at 1 s
    result = render_midi(write_midi(tmp_path / "h.mid", hanging), tmp_path / "h.wav", soundfont)
    assert 1.0 < result.seconds < 1.0 + TAIL_MAX_SECONDS


def test_loud_files_are_scaled_not_clipped(soundfont: Path, tmp_path: Path) -> None:
    cluster = [e for p in range(36, 96) for e in note(0, 2, p, velocity=127)]
    result = render_midi(write_midi(tmp_path / "loud.mid", cluster), tmp_path / "l.wav", soundfont)
    audio, _ = read_wav(result.path)
    assert result.scaled < 1.0
    assert np.abs(audio).max() < 0.95  # -1 dBFS is 0.89


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "the file is empty"),
        (b"RIFF\x00\x00\x00\x00WAVE", "not a MIDI file"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x01\x00\x90", "cut off"),
    ],
)
def test_a_corrupt_or_empty_file_is_one_clear_error(
    content: bytes, why: str, soundfont: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(content)
    out = tmp_path / "out.wav"
    out.write_bytes(b"previous")
    with pytest.raises(UserError, match=why) as err:
        render_midi(bad, out, soundfont)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    assert out.read_bytes() == b"previous"


def test_a_file_without_notes_is_an_error(soundfont: Path, tmp_path: Path) -> None:
    empty = write_midi(tmp_path / "e.mid", [(1.0, mido.Message("control_change", control=7))])
    with pytest.raises(UserError, match="no notes"):
        render_midi(empty, tmp_path / "e.wav", soundfont)
    assert not (tmp_path / "e.wav").exists()


def test_a_missing_or_wrong_soundfont_is_named(chorale: Path, soundfont: Path, tmp_path: Path):
    with pytest.raises(UserError, match="no such SoundFont"):
        render_midi(chorale, tmp_path / "x.wav", tmp_path / "missing.sf2")
    with pytest.raises(UserError, match="not a SoundFont 2 file"):
        render_midi(chorale, tmp_path / "x.wav", chorale)
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x10\x00\x00\x00sfbkLIST" + bytes(16))
    with pytest.raises(UserError, match="cannot load this SoundFont"):
        render_midi(chorale, tmp_path / "x.wav", fake)
    assert not (tmp_path / "x.wav").exists()


def test_a_bad_sample_rate_is_refused(chorale: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sample rate"):
        render_midi(chorale, tmp_path / "x.wav", sample_rate=100)
