"""Multi-track piano rolls, torch-free: MuseGAN's ``tracks x bars x steps x pitches``.

A file's voices become tracks: files with at least ``tracks`` tracks of notes (the
chorales: soprano, alto, tenor, bass) give their tracks, ordered by mean pitch from the
top; any other file (one piano track, a folk tune) is split by pitch rank — each note goes
to the track of its place, from the top, among the notes sounding where it starts (a
melody over chords gives the melody to track 0). A note fills every step it sounds in; a
note struck again on the step after it ended is a new onset only if a step of silence lay
between, as in any piano roll.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from antiphon.models.midi.notes import Grid, canonicalize, midi_events, read_midi_file

Span = tuple[int, int, int]  # (start tick, end tick, pitch)


def voices(path: str | Path, grid: Grid, tracks: int) -> list[list[Span]]:
    """The notes of a MIDI file as ``tracks`` voices, top first."""
    events = midi_events(read_midi_file(path))
    by_track: dict[object, list] = {}
    for e in events:
        by_track.setdefault(e.source[0] if isinstance(e.source, tuple) else e.source, []).append(e)
    parts = []
    for evs in by_track.values():
        notes = [(n.start, n.end or n.start + 1, n.pitch) for n in canonicalize(evs, grid).notes]
        if notes:
            parts.append(notes)
    if len(parts) >= tracks:
        parts.sort(key=lambda ns: -float(np.mean([p for _, _, p in ns])))
        return parts[:tracks]
    notes = [(n.start, n.end or n.start + 1, n.pitch) for n in canonicalize(events, grid).notes]
    return split_by_rank(notes, tracks)


def split_by_rank(notes: Iterable[Span], tracks: int) -> list[list[Span]]:
    """Each note to the track of its rank from the top among the notes sounding at its
    start (ranks past the last track go to the last)."""
    notes = sorted(notes)
    out: list[list[Span]] = [[] for _ in range(tracks)]
    for start, end, pitch in notes:
        above = sum(1 for s, e, p in notes if s <= start < e and p > pitch)
        out[min(above, tracks - 1)].append((start, end, pitch))
    return out


def roll(
    notes: Iterable[Span], start: int, steps: int, pitch_lo: int, n_pitches: int
) -> np.ndarray:
    """(steps, n_pitches) uint8 of the notes sounding in ticks [start, start + steps); a
    pitch outside the range folds by octaves into it."""
    out = np.zeros((steps, n_pitches), dtype=np.uint8)
    for s, e, p in notes:
        a, b = max(s - start, 0), min(e - start, steps)
        if b <= a:
            continue
        while p < pitch_lo:
            p += 12
        while p >= pitch_lo + n_pitches:
            p -= 12
        out[a:b, p - pitch_lo] = 1
    return out


def roll_notes(roll: np.ndarray, pitch_lo: int, start: int = 0) -> list[Span]:
    """The notes of a (steps, pitches) roll: runs of consecutive sounding steps."""
    steps = roll.shape[0]
    padded = np.vstack([np.zeros((1, roll.shape[1]), np.int8), roll.astype(np.int8),
                        np.zeros((1, roll.shape[1]), np.int8)])  # fmt: skip
    diff = np.diff(padded, axis=0)
    out = []
    for k in range(roll.shape[1]):
        ons, offs = np.flatnonzero(diff[:, k] > 0), np.flatnonzero(diff[:, k] < 0)
        out += [
            (start + int(a), start + int(min(b, steps)), pitch_lo + k) for a, b in zip(ons, offs)
        ]
    return sorted(out)


def phrase_rolls(
    parts: Sequence[list[Span]], bars: int, bar_ticks: int, pitch_lo: int, n_pitches: int,
    stride_bars: int = 1,
) -> np.ndarray:  # fmt: skip
    """(N, tracks, bars, steps, pitches) uint8 phrases of a piece, one starting on every
    ``stride_bars``-th bar, kept when at least half of their bars hold a note."""
    end = max((e for part in parts for _, e, _ in part), default=0)
    out = []
    for b0 in range(0, max(end - bars * bar_ticks, 0) + 1, stride_bars * bar_ticks):
        sample = np.stack(
            [
                np.stack(
                    [
                        roll(part, b0 + i * bar_ticks, bar_ticks, pitch_lo, n_pitches)
                        for i in range(bars)
                    ]
                )
                for part in parts
            ]
        )
        if (sample.reshape(len(parts), bars, -1).any(axis=(0, 2))).sum() * 2 >= bars:
            out.append(sample)
    shape = (0, len(parts), bars, bar_ticks, n_pitches)
    return np.stack(out) if out else np.zeros(shape, dtype=np.uint8)


def keys_down(probs: np.ndarray, monophonic: bool = False) -> np.ndarray:
    """The keys a phrase's probabilities sound, drawn with no randomness: a monophonic
    track its most likely key each step, unless a rest (what is left of 1) is likelier;
    others every key over 1/2 (the paper's threshold)."""
    if not monophonic:
        return probs > 0.5
    rest = 1.0 - probs.sum(axis=-1, keepdims=True)
    best = probs.argmax(axis=-1)[..., None]
    return (np.arange(probs.shape[-1]) == best) & (probs.max(axis=-1, keepdims=True) > rest)


def note_grid(rolls: np.ndarray, steps_per_beat: int, share: float = 0.99) -> int:
    """The coarsest note grid, in steps a beat, that holds ``share`` of the rolls' note
    starts and ends: 1 where every note begins and ends on a beat (JSB's chorales, as
    quantised for the polyphonic benchmarks), 4 for sixteenths. Only divisors of
    ``steps_per_beat``; ``steps_per_beat`` itself where no coarser grid holds them."""
    r = np.asarray(rolls, dtype=bool)
    r = r.reshape(*r.shape[:2], -1, r.shape[-1])  # (N, tracks, bars * steps, pitches)
    pad = np.zeros((*r.shape[:2], 1, r.shape[-1]), dtype=bool)
    edges = np.concatenate((pad, r, pad), axis=2)
    steps = np.nonzero(edges[:, :, 1:] != edges[:, :, :-1])[2]  # where a note starts or ends
    if steps.size == 0:
        return steps_per_beat
    for n in range(1, steps_per_beat):
        if steps_per_beat % n == 0 and (steps % (steps_per_beat // n) == 0).mean() >= share:
            return n
    return steps_per_beat
