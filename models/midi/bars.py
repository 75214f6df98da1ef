"""Bars of melody and their chords: what MidiNet reads and writes, for files and live input.

A bar is 16 sixteenth-note steps (4/4; bars are counted from tick 0 of a file, or from the
live answer's bar grid). Its **melody** is the skyline — at each step the highest pitch
sounding, or a rest: a chorale's soprano, a folk tune's line, the player's top voice. Its
**chord** comes from the other notes sounding in the bar (the lower voices: a chorale's alto,
tenor and bass), weighted by the steps they sound; a bar without lower voices takes its
chord from all its notes when they spell at least three pitch classes and nearly all of its
weight is one triad (an arpeggio), and has no chord otherwise (a folk tune's bare line). The
chord is a root and a quality, major or minor (``detect_chord``: the triad template holding
the most of the bar's weight, with its third present), given to the model as 12 root + 2
quality one-hots (``chord_vector``; all zero for no chord).

A melody is stored as MIDI pitches (-1 a rest) and folded by octaves into the model's keys
only when it becomes a roll (``melody_roll``), so transposition can act on pitches first.
No torch here: the live voice uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

STEPS = 16  # steps per bar: sixteenth notes of a 4/4 bar
CHORD_DIM = 14  # 12 roots (C first) + major, minor
QUALITIES = ("maj", "min")
_TEMPLATES = {"maj": (0, 4, 7), "min": (0, 3, 7)}
MIN_CHORD_SHARE = 0.6  # the triad must hold this share of the lower voices' weight
# A bar without lower voices names a chord only when its notes nearly all spell the triad (an
# arpeggio): a stepwise tune touches a triad's tones too, and is left without a chord.
ARPEGGIO_SHARE = 0.9
REST = -1
NoteSpan = tuple[int, int, int]  # (start tick, end tick, pitch)


def detect_chord(
    weights: Sequence[float], min_share: float = MIN_CHORD_SHARE
) -> tuple[int, int] | None:
    """(root pitch class, quality index) of 12 pitch-class weights, or None when no major or
    minor triad with its root and third present holds ``min_share`` of the weight."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total <= 0:
        return None
    best, best_key = None, (-1.0, -1.0)
    for root in range(12):
        for q, name in enumerate(QUALITIES):
            pcs = [(root + i) % 12 for i in _TEMPLATES[name]]
            if w[pcs[1]] <= 0 or w[root] <= 0:
                continue
            key = (float(w[pcs].sum()), float(w[root]))  # ties: the heavier root
            if key > best_key:
                best, best_key = (root, q), key
    if best is None or best_key[0] / total < min_share:
        return None
    return best


def chord_vector(chord: tuple[int, int] | None) -> np.ndarray:
    v = np.zeros(CHORD_DIM, dtype=np.float32)
    if chord is not None:
        v[chord[0]] = 1.0
        v[12 + chord[1]] = 1.0
    return v


def chord_code(chord: tuple[int, int] | None) -> int:
    """One int per chord for arrays: root * 2 + quality, -1 for none."""
    return -1 if chord is None else chord[0] * 2 + chord[1]


def chord_of_code(code: int) -> tuple[int, int] | None:
    return None if code < 0 else (code // 2, code % 2)


def sounding_steps(notes: Iterable[NoteSpan], start: int, step_ticks: int) -> list[list[int]]:
    """For each of the bar's STEPS steps from tick ``start``, the pitches sounding in it."""
    steps: list[list[int]] = [[] for _ in range(STEPS)]
    end_bar = start + STEPS * step_ticks
    for a, b, pitch in notes:
        b = max(b, a + 1)
        if b <= start or a >= end_bar:
            continue
        first = max(0, (a - start) // step_ticks)
        last = min(STEPS, -(-(b - start) // step_ticks))
        for s in range(first, last):
            steps[s].append(pitch)
    return steps


def bar_of_notes(notes: Sequence[NoteSpan], start: int, step_ticks: int) -> tuple[np.ndarray, int]:
    """(melody pitches (STEPS,) with -1 for rests, chord code) of the bar from ``start``."""
    steps = sounding_steps(notes, start, step_ticks)
    melody = np.asarray([max(s) if s else REST for s in steps], dtype=np.int16)
    lower = np.zeros(12)
    every = np.zeros(12)
    for s, top in zip(steps, melody):
        for p in s:
            every[p % 12] += 1
            if p != top:
                lower[p % 12] += 1
    if lower.any():
        chord = detect_chord(lower)
    elif np.count_nonzero(every) >= 3:
        chord = detect_chord(every, ARPEGGIO_SHARE)
    else:
        chord = None
    return melody, chord_code(chord)


def piece_bars(notes: Sequence[NoteSpan], tpq: int) -> np.ndarray:
    """(bars, STEPS + 1) int16: each bar's melody and, last, its chord code; bars from tick 0
    to the end of the last note."""
    step_ticks = tpq // 4
    end = max((b for _, b, _ in notes), default=0)
    bar_ticks = STEPS * step_ticks
    rows = []
    for start in range(0, end, bar_ticks):
        here = [n for n in notes if n[0] < start + bar_ticks and max(n[1], n[0] + 1) > start]
        melody, chord = bar_of_notes(here, start, step_ticks)
        rows.append(np.concatenate([melody, [chord]]))
    return np.asarray(rows, dtype=np.int16).reshape(-1, STEPS + 1)


def fold(pitch: int, pitch_lo: int, n_keys: int) -> int:
    """A pitch moved by octaves into [pitch_lo, pitch_lo + n_keys)."""
    while pitch < pitch_lo:
        pitch += 12
    while pitch >= pitch_lo + n_keys:
        pitch -= 12
    return pitch


def melody_roll(melody: Sequence[int], pitch_lo: int, n_keys: int) -> np.ndarray:
    """(STEPS, n_keys + 1) one-hot float32: a key per sounding step, the last column a rest."""
    roll = np.zeros((len(melody), n_keys + 1), dtype=np.float32)
    for s, p in enumerate(melody):
        roll[s, n_keys if p < 0 else fold(int(p), pitch_lo, n_keys) - pitch_lo] = 1.0
    return roll


def melody_notes(melody: Sequence[int], start: int, step_ticks: int) -> list[NoteSpan]:
    """A bar's melody as notes: a pitch held over consecutive steps is one note."""
    notes: list[NoteSpan] = []
    s = 0
    while s < len(melody):
        p = int(melody[s])
        e = s + 1
        while e < len(melody) and int(melody[e]) == p:
            e += 1
        if p >= 0:
            notes.append((start + s * step_ticks, start + e * step_ticks, p))
        s = e
    return notes
