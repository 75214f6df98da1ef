"""A melody as MusicVAE reads it: one event per sixteenth note, torch-free.

Each step of a bar (16 to a 4/4 bar, ``STEPS_PER_QUARTER`` to a beat) holds one event:
``NOTE_OFF`` (the sounding note ends here), ``NO_EVENT`` (the step continues what came
before: a held note or a rest) or a note-on, ``FIRST_PITCH + pitch - pitch_lo`` — Magenta's
melody encoding (its -1 / -2 / pitch), here with the classes of ``n_pitches`` keys only.

Any MIDI (a chorale of four voices, a folk tune, the live input) becomes one line by its
skyline: at each step the highest note struck there, unless a higher note is still
sounding (a lower voice entering under the soprano is not the melody). The ticks come from
``notes.NoteStream`` on ``MELODY_GRID`` (4 ticks a beat: a tick is a step), the same
reading the daemon does of the live input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from antiphon.models.midi.notes import Grid, TickEvents

STEPS_PER_QUARTER = 4
STEPS_PER_BAR = 16  # 4/4: a phrase of 2 bars is 32 steps, as MusicVAE's 2-bar models
MELODY_GRID = Grid(tpq=STEPS_PER_QUARTER)
NOTE_OFF = 0
NO_EVENT = 1
FIRST_PITCH = 2


@dataclass(frozen=True)
class MelodyRange:
    pitch_lo: int = 21
    n_pitches: int = 88

    @property
    def classes(self) -> int:
        return FIRST_PITCH + self.n_pitches

    def event(self, pitch: int) -> int:
        """The note-on class of ``pitch``, folded by octaves into the range."""
        lo, hi = self.pitch_lo, self.pitch_lo + self.n_pitches - 1
        while pitch < lo:
            pitch += 12
        while pitch > hi:
            pitch -= 12
        return FIRST_PITCH + pitch - lo

    def pitch(self, event: int) -> int:
        return self.pitch_lo + event - FIRST_PITCH


class Timed(Protocol):
    start: int
    end: int | None
    pitch: int


@dataclass(frozen=True, slots=True)
class HeardNote:
    start: int  # ticks of MELODY_GRID
    pitch: int
    end: int | None = None  # None while the key is down


def hear(
    notes: tuple[HeardNote, ...], ticks: Iterable[TickEvents], keep: int
) -> tuple[HeardNote, ...]:
    """``notes`` after closed ticks: note-ons added, note-offs filling in their ends; only
    the notes that started within the last ``keep`` ticks are kept."""
    out = list(notes)
    where = {(n.start, n.pitch): i for i, n in enumerate(out)}
    last = out[-1].start if out else 0
    for ev in ticks:
        for n in ev.offs:
            i = where.get((n.start, n.pitch))
            if i is not None and out[i].end is None:
                out[i] = HeardNote(out[i].start, out[i].pitch, ev.tick)
        for n in ev.ons:
            where[(ev.tick, n.pitch)] = len(out)
            out.append(HeardNote(ev.tick, n.pitch))
        last = ev.tick
    return tuple(n for n in out if n.start > last - keep)


def skyline(notes: Iterable[Timed], start: int, steps: int, rng: MelodyRange) -> np.ndarray:
    """(steps,) int64 melody events of the notes in ticks ``[start, start + steps)`` of
    ``MELODY_GRID``. A note sounding at ``start`` since before it is not struck there: the
    phrase starts with a rest until its first note-on."""
    events = np.full(steps, NO_EVENT, dtype=np.int64)
    by_start: dict[int, list[Timed]] = {}
    for n in notes:
        if start <= n.start < start + steps:
            by_start.setdefault(n.start - start, []).append(n)
    current: tuple[int, int] | None = None  # (pitch, end step) of the melody's sounding note
    for s in range(steps):
        if current is not None and current[1] <= s:
            events[s] = NOTE_OFF
            current = None
        struck = by_start.get(s)
        if struck:
            top = max(struck, key=lambda n: n.pitch)
            if current is None or top.pitch >= current[0]:
                end = (top.end if top.end is not None else start + steps) - start
                events[s] = rng.event(top.pitch)
                current = (top.pitch, max(end, s + 1))
    return events


def melody_notes(
    events: Sequence[int], rng: MelodyRange, *, start: int = 0, until: int | None = None
) -> list[tuple[int, int, int]]:
    """(start tick, end tick, pitch) of a melody's notes; a note still sounding at the end
    ends at ``until`` (default: the end of the melody)."""
    end_of = start + len(events) if until is None else until
    out: list[tuple[int, int, int]] = []
    current: tuple[int, int] | None = None  # (onset, pitch)
    for s, e in enumerate(events):
        tick = start + s
        if e == NO_EVENT:
            continue
        if current is not None:
            out.append((current[0], tick, current[1]))
            current = None
        if e >= FIRST_PITCH:
            current = (tick, rng.pitch(int(e)))
    if current is not None:
        out.append((current[0], max(end_of, current[0] + 1), current[1]))
    return out


def note_count(events: np.ndarray) -> int:
    return int((np.asarray(events) >= FIRST_PITCH).sum())
