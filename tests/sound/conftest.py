"""Fixtures for sound tests: a real General MIDI SoundFont and a real FluidSynth, or a skip
naming what to install; and small MIDI files written on the fly."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from antiphon.errors import UserError


@pytest.fixture(scope="session")
def soundfont() -> Path:
    from antiphon.sound.fluid import load
    from antiphon.sound.soundfont import find_soundfont

    try:
        load()
        return find_soundfont()
    except UserError as exc:
        pytest.skip(str(exc))


def write_midi(path: Path, events: list[tuple[float, mido.Message]], bpm: float = 120.0) -> Path:
    """One track of ``(beat, message)``; tempo changes are ``MetaMessage('set_tempo')``."""
    tpb = 480
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)])
    last = 0
    for beat, msg in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        tick = round(beat * tpb)
        track.append(msg.copy(time=tick - last))
        last = tick
    mid.tracks.append(track)
    mid.save(path)
    return path


def note(beat: float, length: float, pitch: int, velocity: int = 100, channel: int = 0):
    return [
        (beat, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)),
        (beat + length, mido.Message("note_off", note=pitch, channel=channel)),
    ]


def read_wav(source: Path | bytes) -> tuple[np.ndarray, int]:
    """``(float samples (frames, channels) in -1..1, sample rate)``."""
    f = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    with f, wave.open(f, "rb") as w:
        assert w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.reshape(-1, w.getnchannels()).astype(np.float64) / 32768.0, w.getframerate()


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
