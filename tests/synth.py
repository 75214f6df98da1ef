"""Synthetic but musical MIDI pieces for tests that train: scale melodies over chords.

Real enough for a tiny model to learn in a few hundred steps (regular rhythm, a key, chords
under a melody, the sustain pedal), generated on the fly so no corpus is committed.
"""

from __future__ import annotations

import random
from pathlib import Path

import mido

MAJOR = [0, 2, 4, 5, 7, 9, 11]


def write_piece(path: Path, seed: int, bars: int = 8) -> Path:
    rng = random.Random(seed)
    tonic = 48 + rng.randrange(12)
    tpb = 480
    events: list[tuple[int, mido.Message]] = []
    degree = 0
    for bar in range(bars):
        t0 = bar * 4 * tpb
        root = tonic + MAJOR[rng.choice([0, 3, 4, 5])]
        for p in (root, root + 4, root + 7):
            events.append((t0, mido.Message("note_on", note=p, velocity=rng.randint(50, 70))))
            events.append((t0 + 4 * tpb - 10, mido.Message("note_off", note=p)))
        if rng.random() < 0.5:
            events.append((t0, mido.Message("control_change", control=64, value=127)))
            events.append((t0 + 4 * tpb - 20, mido.Message("control_change", control=64, value=0)))
        t = t0
        while t < t0 + 4 * tpb:
            length = rng.choice([tpb // 2, tpb // 2, tpb, tpb])
            degree = max(-3, min(10, degree + rng.choice([-2, -1, -1, 1, 1, 2])))
            octave, step = divmod(degree, 7)
            pitch = tonic + 12 + 12 * octave + MAJOR[step]
            events.append((t, mido.Message("note_on", note=pitch, velocity=rng.randint(70, 110))))
            events.append((t + length - 20, mido.Message("note_off", note=pitch)))
            t += length
    events.sort(key=lambda e: (e[0], e[1].type == "note_on"))
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    last = 0
    for at, msg in events:
        track.append(msg.copy(time=at - last))
        last = at
    mid.save(path)
    return path


def write_corpus(folder: Path, pieces: int = 40, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(pieces):
        write_piece(folder / f"piece-{i:03d}.mid", seed * 1000 + i)
    return folder
