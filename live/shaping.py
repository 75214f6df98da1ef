"""Output shaping: what the daemon does to generated notes before they are scheduled.

``shape`` is pure and keeps these invariants, whatever it is given: every pitch lies in
``lowest..highest``, every velocity in 1..127, every note lasts more than zero and at most
``max_note_seconds``, no two notes of one pitch overlap, and no more than ``polyphony``
notes sound at once. ``notes_to_events`` then gives each note exactly one note-on and one
note-off.

Choices:
- Out-of-range pitches fold by octaves into the range (the pitch class survives); a range
  narrower than an octave cannot hold every pitch class, so what is still outside is
  clamped to the nearer bound.
- Two notes of one pitch that overlap cannot both sound on one MIDI channel: the earlier is
  cut where the later starts; if they start together they merge (the louder velocity, the
  later end).
- Polyphony: a note that would exceed the cap is dropped, note-off and all; nothing
  already sounding is stolen, because a cut-off note is more audible than a missing one.
  Among notes that start together, louder ones (then lower ones) win.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from antiphon.errors import UserError
from antiphon.live.scheduler import ScheduledEvent

MIN_NOTE_SECONDS = 0.005  # shorter notes are lengthened: an instant note-off may be lost


@dataclass(frozen=True)
class NoteEvent:
    start: float  # seconds from the response's start
    end: float  # seconds from the response's start
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Shaping:
    transpose: int = 0  # semitones
    velocity_scale: float = 1.0
    lowest: int = 0
    highest: int = 127
    max_note_seconds: float | None = None
    polyphony: int | None = None
    tempo_scale: float = 1.0  # > 1 plays the generated notes faster (times are divided by it)
    max_notes: int | None = None  # stop after this many notes

    def __post_init__(self) -> None:
        if not 0 <= self.lowest <= self.highest <= 127:
            raise UserError(
                f"pitch range {self.lowest}..{self.highest} must lie within 0..127, low first"
            )
        if self.velocity_scale < 0:
            raise UserError(f"velocity scale must be >= 0, got {self.velocity_scale}")
        if self.max_note_seconds is not None and self.max_note_seconds <= 0:
            raise UserError(f"max note length must be positive, got {self.max_note_seconds}")
        if self.polyphony is not None and self.polyphony < 1:
            raise UserError(f"polyphony must be at least 1, got {self.polyphony}")
        if not self.tempo_scale > 0:
            raise UserError(f"tempo scale must be positive, got {self.tempo_scale}")
        if self.max_notes is not None and self.max_notes < 1:
            raise UserError(f"number of notes must be at least 1, got {self.max_notes}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Shaping:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown shaping option(s) {', '.join(unknown)}")
        return cls(**d)


def fold_pitch(pitch: int, lowest: int, highest: int) -> int:
    while pitch < lowest and pitch + 12 <= 127:
        pitch += 12
    while pitch > highest and pitch - 12 >= 0:
        pitch -= 12
    return min(max(pitch, lowest), highest)


def shape(notes: Iterable[NoteEvent], s: Shaping) -> list[NoteEvent]:
    """Shaped notes sorted by (start, pitch); see the module docstring. Times are relative
    to the start of what is being shaped (a continuation, an answer): tempo scaling
    stretches them about that start."""
    shaped = []
    for n in notes:
        if s.tempo_scale != 1.0:
            n = replace(n, start=n.start / s.tempo_scale, end=n.end / s.tempo_scale)
        end = max(n.end, n.start + MIN_NOTE_SECONDS)
        if s.max_note_seconds is not None:
            end = min(end, n.start + max(s.max_note_seconds, MIN_NOTE_SECONDS))
        shaped.append(
            NoteEvent(
                start=n.start,
                end=end,
                pitch=fold_pitch(n.pitch + s.transpose, s.lowest, s.highest),
                velocity=min(max(round(n.velocity * s.velocity_scale), 1), 127),
            )
        )
    shaped = _resolve_same_pitch(shaped)
    if s.polyphony is not None:
        shaped = _cap_polyphony(shaped, s.polyphony)
    shaped.sort(key=lambda n: (n.start, n.pitch))
    return shaped[: s.max_notes] if s.max_notes is not None else shaped


def _resolve_same_pitch(notes: list[NoteEvent]) -> list[NoteEvent]:
    last: dict[int, NoteEvent] = {}
    done: list[NoteEvent] = []
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        prev = last.get(n.pitch)
        if prev is not None and n.start < prev.end:
            if n.start - prev.start < MIN_NOTE_SECONDS:
                n = replace(n, velocity=max(n.velocity, prev.velocity), end=max(n.end, prev.end))
            else:
                done.append(replace(prev, end=n.start))
        elif prev is not None:
            done.append(prev)
        last[n.pitch] = n
    return done + list(last.values())


def _cap_polyphony(notes: list[NoteEvent], cap: int) -> list[NoteEvent]:
    kept: list[NoteEvent] = []
    ends: list[float] = []  # heap of the kept notes' ends: who is still sounding
    for n in sorted(notes, key=lambda n: (n.start, -n.velocity, n.pitch)):
        while ends and ends[0] <= n.start:
            heapq.heappop(ends)
        if len(ends) < cap:
            heapq.heappush(ends, n.end)
            kept.append(n)
    return kept


def notes_to_events(
    notes: Iterable[NoteEvent], t0: float, channel: int = 0, tag: int | None = None
) -> list[ScheduledEvent]:
    """Note-on/note-off events at ``t0 + start`` and ``t0 + end`` on ``channel``, in time
    order with note-offs first where times coincide (the scheduler orders them the same
    way). Notes are lengthened to ``MIN_NOTE_SECONDS`` so a note's own off never sorts
    before its on."""
    if not 0 <= channel <= 15:
        raise ValueError(f"MIDI channel must be 0..15, got {channel}")
    keyed = []
    for n in notes:
        end = max(n.end, n.start + MIN_NOTE_SECONDS)
        keyed.append((t0 + n.start, 1, n.pitch, (0x90 | channel, n.pitch, n.velocity)))
        keyed.append((t0 + end, 0, n.pitch, (0x80 | channel, n.pitch, 0)))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    return [ScheduledEvent(time, data, tag) for time, _, _, data in keyed]
