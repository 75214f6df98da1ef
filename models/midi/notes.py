"""One reading of MIDI for files and live input: notes and pedals on the tokenizer's grid.

Files and the live input port go through the same ``NoteStream``: raw note-on/note-off/CC64
events in time order come in, notes quantized to the tokenizer's grid come out, tick by tick.
Because both paths share it, a live context and an offline encoding of the same events agree
token for token (tests/live/test_context.py proves it against miditok).

The canonical form (what miditok then sees, already preprocessed):
- times in beats are rounded half-up to ``tpq`` ticks per quarter note; a note or pedal that
  collapses onto one tick lasts one tick;
- all channels and tracks are merged into one voice; a note-on of a pitch that is already
  sounding ends the sounding note there (a zero-length leftover is dropped);
- velocities snap to the nearest bin (ties go up, as ``miditok.utils.np_get_closest`` does);
- the sustain pedal is down while any source holds CC64 >= 64; a pedal that comes back down on
  the tick it went up continues, as miditok merges touching pedals.
"""

from __future__ import annotations

import bisect
import io
import math
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from antiphon.atomic import atomic_file
from antiphon.errors import UserError

if TYPE_CHECKING:
    import mido

DRUM_CHANNEL = 9  # General MIDI channel 10: percussion, not pitched notes.
PEDAL_CC = 64


@dataclass(slots=True)
class Note:
    start: int  # ticks
    end: int | None  # ticks; None while the key is still held
    pitch: int
    velocity: int


@dataclass(slots=True)
class Pedal:
    start: int
    end: int | None


@dataclass(frozen=True)
class Grid:
    """The time, pitch and velocity resolution of a tokenizer."""

    tpq: int
    pitch_lo: int = 21
    pitch_hi: int = 108  # inclusive
    velocities: tuple[int, ...] = tuple(range(3, 128, 4))

    def tick(self, beat: float) -> int:
        return math.floor(beat * self.tpq + 0.5)

    def velocity(self, value: int) -> int:
        bins = self.velocities
        i = bisect.bisect_left(bins, value)
        if i == len(bins):
            return bins[-1]
        if i > 0 and abs(value - bins[i - 1]) < abs(value - bins[i]):
            return bins[i - 1]
        return bins[i]

    def to_dict(self) -> dict:
        return {
            "tpq": self.tpq,
            "pitch_lo": self.pitch_lo,
            "pitch_hi": self.pitch_hi,
            "velocities": list(self.velocities),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Grid:
        return cls(d["tpq"], d["pitch_lo"], d["pitch_hi"], tuple(d["velocities"]))


@dataclass(slots=True)
class TickEvents:
    """Everything that happens on one tick, in the order the tokenizer writes it."""

    tick: int
    pedal: bool | None = None  # True: pedal down, False: pedal up, None: no change
    offs: list[Note] = field(default_factory=list)  # sorted by (start, pitch)
    ons: list[Note] = field(default_factory=list)  # sorted by pitch


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A MIDI event in musical time, before quantization."""

    beat: float
    kind: str  # "on" | "off" | "pedal"
    source: Hashable  # (track, channel) for files, (port, channel) live
    value: int = 0  # pitch, or pedal CC value
    velocity: int = 0


def _drop(notes: list[Note], note: Note) -> None:
    """Remove ``note`` itself (not an equal one) from ``notes``, looking from the end: a
    re-strike cuts a recent note. ``list.remove`` compared every note before it field by
    field: under a flood (a thousand notes open on one tick) that was 40 % of the live
    input thread's time."""
    for i in range(len(notes) - 1, -1, -1):
        if notes[i] is note:
            del notes[i]
            return


class NoteStream:
    """Pairs note-ons with note-offs, quantizes them and closes ticks in time order.

    Events must arrive in non-decreasing time; an event earlier than a tick already closed is
    moved onto the first open tick (live input can jitter backwards by a hair).
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.cursor = 0  # first tick that is still open
        self._held: dict[tuple[Hashable, int], Note] = {}
        self._last: dict[int, Note] = {}  # latest note per pitch whose note-off is not out yet
        self._unstarted: list[Note] = []  # note-ons not yet emitted
        self._unended: list[Note] = []  # note-offs not yet emitted
        self._pedal_sources: set[Hashable] = set()
        self._pedal_start = 0  # tick the current (or last) pedal went down
        self._pedal_due: list[tuple[int, bool]] = []  # pedal changes not yet emitted

    # -- input ---------------------------------------------------------------------------
    def _at(self, beat: float) -> int:
        return max(self.grid.tick(beat), self.cursor)

    def note_on(self, beat: float, pitch: int, velocity: int, source: Hashable = 0) -> None:
        if velocity <= 0:
            self.note_off(beat, pitch, source)
            return
        if not self.grid.pitch_lo <= pitch <= self.grid.pitch_hi:
            return
        t = self._at(beat)
        last = self._last.get(pitch)
        if last is not None and (last.end is None or last.end > t):
            self._end(last, t)
        note = Note(t, None, pitch, self.grid.velocity(velocity))
        self._held[(source, pitch)] = note
        self._last[pitch] = note
        self._unstarted.append(note)
        self._unended.append(note)

    def note_off(self, beat: float, pitch: int, source: Hashable = 0) -> None:
        note = self._held.pop((source, pitch), None)
        if note is not None and note.end is None:
            self._end(note, max(self._at(beat), note.start + 1))

    def _end(self, note: Note, t: int) -> None:
        note.end = t
        for key, held in list(self._held.items()):
            if held is note:
                del self._held[key]
        if t <= note.start:  # cut to nothing by a re-strike on its own tick: it never sounded
            _drop(self._unstarted, note)
            _drop(self._unended, note)
            if self._last.get(note.pitch) is note:
                del self._last[note.pitch]

    def all_notes_off(self, beat: float, source: Hashable = 0) -> None:
        """MIDI All Notes Off from ``source``: its held keys go up (the pedal stays)."""
        for key, note in list(self._held.items()):
            if key[0] == source:
                self.note_off(beat, note.pitch, source)

    def pedal(self, beat: float, value: int, source: Hashable = 0) -> None:
        down_before = bool(self._pedal_sources)
        if value >= 64:
            self._pedal_sources.add(source)
        else:
            self._pedal_sources.discard(source)
        down = bool(self._pedal_sources)
        if down == down_before:
            return
        t = self._at(beat)
        if down:
            due = self._pedal_due
            if due and not due[-1][1] and due[-1][0] >= t:
                due.pop()  # touching pedals merge: it never went up
            else:
                self._pedal_start = t
                due.append((t, True))
        else:
            self._pedal_up(t)

    def _pedal_up(self, t: int) -> None:
        self._pedal_due.append((max(t, self._pedal_start + 1), False))

    def feed(self, event: RawEvent) -> None:
        if event.kind == "on":
            self.note_on(event.beat, event.value, event.velocity, event.source)
        elif event.kind == "off":
            self.note_off(event.beat, event.value, event.source)
        elif event.kind == "pedal":
            self.pedal(event.beat, event.value, event.source)

    # -- output --------------------------------------------------------------------------
    @property
    def holding(self) -> bool:
        """Whether any key or the pedal is still down."""
        return bool(self._held) or bool(self._pedal_sources)

    def holding_except(self, source: Hashable) -> bool:
        """Whether any source other than ``source`` holds a key or the pedal."""
        return any(key[0] != source for key in self._held) or any(
            s != source for s in self._pedal_sources
        )

    def advance(self, beat: float) -> list[TickEvents]:
        """Close every tick before the one ``beat`` falls on and return their events."""
        return self.close_before(self.grid.tick(beat))

    def close_before(self, tick: int) -> list[TickEvents]:
        if tick <= self.cursor:
            # Nothing pending is due before the cursor (every time is taken at the cursor
            # or later, ``_at``): under a flood, most messages fall on the tick under way,
            # and looking for what is due cost the live input thread a walk over every
            # note not yet emitted, for each message.
            return []
        out: list[TickEvents] = []
        while True:
            due = self._next_due()
            if due is None or due >= tick:
                break
            out.append(self._close(due))
        self.cursor = max(self.cursor, tick)
        return out

    def finish(self, beat: float | None = None) -> list[TickEvents]:
        """Release everything still held at ``beat`` (default: the last open tick) and flush."""
        t = self.cursor if beat is None else self._at(beat)
        for note in list(self._held.values()):
            if note.end is None:
                self._end(note, max(t, note.start + 1))
        self._held.clear()
        if self._pedal_sources:
            self._pedal_sources.clear()
            self._pedal_up(t)
        return self.close_before(2**62)

    def _next_due(self) -> int | None:
        candidates = [n.start for n in self._unstarted]
        candidates += [n.end for n in self._unended if n.end is not None]
        if self._pedal_due:
            candidates.append(self._pedal_due[0][0])
        return min(candidates) if candidates else None

    def _close(self, tick: int) -> TickEvents:
        ev = TickEvents(tick)
        if self._pedal_due and self._pedal_due[0][0] == tick:
            ev.pedal = self._pedal_due.pop(0)[1]
        # One pass each (a flood can leave hundreds of notes on one tick).
        ev.offs = sorted(
            (n for n in self._unended if n.end == tick), key=lambda n: (n.start, n.pitch)
        )
        if ev.offs:
            self._unended = [n for n in self._unended if n.end != tick]
        for n in ev.offs:
            if self._last.get(n.pitch) is n:
                del self._last[n.pitch]
        ev.ons = sorted((n for n in self._unstarted if n.start == tick), key=lambda n: n.pitch)
        if ev.ons:
            self._unstarted = [n for n in self._unstarted if n.start != tick]
        return ev

    def copy(self) -> NoteStream:
        """An independent copy (notes copied once, shared between its own indexes)."""
        twin = NoteStream.__new__(NoteStream)
        twin.grid, twin.cursor = self.grid, self.cursor
        memo: dict[int, Note] = {}

        def c(n: Note) -> Note:
            if id(n) not in memo:
                memo[id(n)] = Note(n.start, n.end, n.pitch, n.velocity)
            return memo[id(n)]

        twin._held = {k: c(n) for k, n in self._held.items()}
        twin._last = {k: c(n) for k, n in self._last.items()}
        twin._unstarted = [c(n) for n in self._unstarted]
        twin._unended = [c(n) for n in self._unended]
        twin._pedal_sources = set(self._pedal_sources)
        twin._pedal_start = self._pedal_start
        twin._pedal_due = list(self._pedal_due)
        return twin


@dataclass
class Performance:
    """Canonical notes and pedals of a piece, on a grid (what the tokenizer encodes)."""

    grid: Grid
    notes: list[Note]
    pedals: list[Pedal]

    @property
    def end(self) -> int:
        ends = [n.end or 0 for n in self.notes] + [p.end or 0 for p in self.pedals]
        return max(ends, default=0)


def performance_from_ticks(ticks: Iterable[TickEvents], grid: Grid) -> Performance:
    notes: list[Note] = []
    pedals: list[Pedal] = []
    for ev in ticks:
        notes.extend(ev.ons)
        if ev.pedal is True:
            pedals.append(Pedal(ev.tick, None))
        elif ev.pedal is False:
            pedals[-1].end = ev.tick
    notes.sort(key=lambda n: (n.start, n.pitch))
    return Performance(grid, notes, pedals)


def canonicalize(events: Iterable[RawEvent], grid: Grid) -> Performance:
    stream = NoteStream(grid)
    ticks: list[TickEvents] = []
    last_beat = 0.0
    for ev in events:
        # Closing ticks as time passes keeps the stream's pending lists short (and is
        # exactly what the live context does).
        ticks.extend(stream.advance(ev.beat))
        stream.feed(ev)
        last_beat = ev.beat
    ticks.extend(stream.finish(last_beat))
    return performance_from_ticks(ticks, grid)


# -- MIDI files ----------------------------------------------------------------------------
class MidiFileError(UserError):
    """A MIDI file that cannot be read or holds no notes."""


def read_midi_file(path: str | Path) -> mido.MidiFile:
    """A MIDI file, or a ``MidiFileError`` saying in one line why it cannot be read."""
    import mido

    from antiphon.models.midi.smf import MAX_BYTES, checked_smf

    path = Path(path)
    if not path.is_file():
        raise MidiFileError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)  # enough to tell that a file is too big, no more
    except OSError as exc:
        raise MidiFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        # mido raises many kinds of exception on meta events it cannot decode (a key signature
        # of 9 sharps, a tempo of two bytes); on checked bytes in memory each is the file's fault.
        return mido.MidiFile(file=io.BytesIO(checked_smf(data)), clip=True)
    except MemoryError:
        raise
    except Exception as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise MidiFileError(f"{path}: not a readable MIDI file: {why}") from None


def read_midi_events(path: str | Path, *, skip_drums: bool = True) -> list[RawEvent]:
    """The note and pedal events of a MIDI file in beats, all tracks merged in time order."""
    return midi_events(read_midi_file(path), skip_drums=skip_drums)


def midi_events(mid: mido.MidiFile, *, skip_drums: bool = True) -> list[RawEvent]:
    """The note and pedal events of a parsed MIDI file in beats, all tracks merged in time order.

    Musical time (ticks / ticks-per-beat) is used and tempo ignored, as miditok does.
    """
    tpb = mid.ticks_per_beat
    timed: list[tuple[int, int, int, RawEvent]] = []
    for ti, track in enumerate(mid.tracks):
        tick = 0
        for order, msg in enumerate(track):
            tick += msg.time
            ev = raw_event_from_message(msg, tick / tpb, (ti, getattr(msg, "channel", 0)))
            if ev is None or (skip_drums and getattr(msg, "channel", None) == DRUM_CHANNEL):
                continue
            timed.append((tick, ti, order, ev))
    timed.sort(key=lambda x: (x[0], x[1], x[2]))
    return [ev for *_, ev in timed]


def save_midi(mid: object, path: str | Path, *, what: str = "MIDI file") -> Path:
    """Write a ``mido.MidiFile`` atomically: the complete new file or the previous one."""
    path = Path(path)
    with atomic_file(path, what=what) as f:
        mid.save(file=f)  # type: ignore[attr-defined]
    return path


def raw_event_from_message(msg: object, beat: float, source: Hashable) -> RawEvent | None:
    """The ``RawEvent`` of a mido message, or None for messages the tokenizer ignores."""
    kind = getattr(msg, "type", None)
    if kind == "note_on":
        if msg.velocity > 0:  # type: ignore[attr-defined]
            return RawEvent(beat, "on", source, msg.note, msg.velocity)  # type: ignore[attr-defined]
        return RawEvent(beat, "off", source, msg.note)  # type: ignore[attr-defined]
    if kind == "note_off":
        return RawEvent(beat, "off", source, msg.note)  # type: ignore[attr-defined]
    if kind == "control_change" and msg.control == PEDAL_CC:  # type: ignore[attr-defined]
        return RawEvent(beat, "pedal", source, msg.value)  # type: ignore[attr-defined]
    return None


def file_ticks(path: str | Path, grid: Grid) -> list[TickEvents]:
    """The closed ticks of a MIDI file, as the live context hears them."""
    return event_ticks(read_midi_events(path), grid)


def event_ticks(events: list[RawEvent], grid: Grid) -> list[TickEvents]:
    """The closed ticks of a file's events, as the live context hears them."""
    stream = NoteStream(grid)
    ticks: list[TickEvents] = []
    for ev in events:
        ticks.extend(stream.advance(ev.beat))
        stream.feed(ev)
    ticks.extend(stream.finish(events[-1].beat if events else 0.0))
    return ticks


def read_performance(path: str | Path, grid: Grid) -> Performance:
    """The canonical performance of a MIDI file; a file with no notes is an error."""
    perf = canonicalize(read_midi_events(path), grid)
    if not perf.notes:
        raise MidiFileError(f"{path}: the MIDI file holds no notes")
    return perf


def iter_note_messages(perf: Performance, channel: int = 0) -> Iterator[tuple[int, list[int]]]:
    """(tick, raw MIDI bytes) of a performance, note-offs before note-ons on a tick."""
    msgs: list[tuple[int, int, list[int]]] = []
    for p in perf.pedals:
        msgs.append((p.start, 1, [0xB0 | channel, PEDAL_CC, 127]))
        if p.end is not None:
            msgs.append((p.end, 0, [0xB0 | channel, PEDAL_CC, 0]))
    for n in perf.notes:
        msgs.append((n.start, 2, [0x90 | channel, n.pitch, n.velocity]))
        if n.end is not None:
            msgs.append((n.end, 0, [0x80 | channel, n.pitch, 0]))
    msgs.sort(key=lambda m: (m[0], m[1]))
    for tick, _, data in msgs:
        yield tick, data
