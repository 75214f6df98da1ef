"""The engine thread: keeps the model in step with the context and plays what it generates.

Everything heard (the player's notes and antiphon's own, echoed back as they are sent)
arrives here as context tokens and is fed into the committed model state, off the input
thread. Generation always works on a fork of that state, so a speculative answer that the
player interrupts is dropped by forgetting the fork.

Respond: when every key is up, the input thread sends a ``Cue`` at the phrase end with
the tokens the context will hold by then; the fork is primed with them plus the silence and
generation starts at once — speculatively, while the silence is still running — scheduling
notes for times at or after the phrase end. If the player plays on, the input thread has
already cleared the scheduler and bumped ``epoch``; the fork is dropped. Accompany: every
new cue (the player's notes, or the daemon keeping a plan alive) re-plans a short horizon
from "now"; notes already sounding keep their note-offs.

A note is scheduled only once its note-off token exists, so nothing scheduled can hang.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from antiphon.live import controls
from antiphon.live.engine import PlanStep, Voice
from antiphon.live.events import Events
from antiphon.live.policy import PolicyConfig
from antiphon.live.sampling import Sampler
from antiphon.live.scheduler import Scheduler
from antiphon.live.shaping import (
    MIN_NOTE_SECONDS,
    NoteEvent,
    Shaping,
    notes_to_events,
    shape,
)
from antiphon.live.threadnames import name_this_python_thread
from antiphon.live.timeline import Timeline
from antiphon.models.midi.codec import Decoded
from antiphon.models.midi.notes import TickEvents

log = logging.getLogger(__name__)
MAX_FAILURES = 3  # answers in a row that fail before the engine gives up (the daemon exits)


@dataclass(frozen=True)
class Heard:
    """Closed ticks of the context (the player's notes and antiphon's own)."""

    ticks: list[TickEvents]
    player: bool


@dataclass(frozen=True)
class Cue:
    """Play from ``start``: the phrase ends there (respond) or the player just played
    (accompany). ``preview`` is what the context will hold by then."""

    start: float
    seconds: float  # how long to play (accompany: the horizon, extended while needed)
    preview: list[TickEvents]  # what the context will have closed by ``start``
    epoch: int


@dataclass(frozen=True)
class Control:
    name: str
    value: float | str | None


@dataclass(frozen=True)
class Swap:
    """Play another model's voice from now on (the daemon has interrupted the old one)."""

    voice: Voice


@dataclass
class ResponseStats:
    phrase_end: float
    answer: int = 0  # the scheduler tag of its notes
    epoch: int = 0  # the plan it belonged to (an interrupt voids it)
    tokens: int = 0
    notes: int = 0
    generation_seconds: float = 0.0
    first_note_time: float | None = None
    cut: bool = False
    cut_at: float | None = None  # when the player's note voided it
    error: str | None = None  # generation failed
    extra: dict = field(default_factory=dict)


@dataclass
class _Open:
    """A note whose note-off is not decoded yet."""

    start: float  # seconds from the answer's start, before tempo scaling
    velocity: int
    placed: NoteEvent | None = None  # scheduled already, with a provisional end
    cut: bool = False  # ended early by a re-strike of its pitch; its note-off is moot


class Playback:
    """Turns decoded events of one answer into shaped notes, in seconds from its start.

    A note is scheduled once its note-off is decoded — or, if it falls due first (a long
    note, and generation running behind), as soon as it is due, with a provisional end at
    the answer's end that its real note-off then moves (``notes`` returns that move). So a
    long first note never delays an answer: it sounds on time, and the ledger still ends
    it."""

    def __init__(
        self, start_tick: int, start_time: float, timeline: Timeline, tpq: int, shaping: Shaping
    ) -> None:
        self.start_tick, self.start_time = start_tick, start_time
        self.timeline, self.tpq, self.shaping = timeline, tpq, shaping
        self.open: dict[int, list[_Open]] = {}  # pitch -> notes not yet ended
        self.placed: list[NoteEvent] = []  # recent notes, for the polyphony cap
        self.count = 0

    @property
    def full(self) -> bool:
        """The answer has played as many notes as it may (``--notes``)."""
        return self.shaping.max_notes is not None and self.count >= self.shaping.max_notes

    def offset(self, tick: int) -> float:
        # Anchored at the answer's start, so its first note is exactly there.
        base = self.timeline.time_of_beat(self.start_tick / self.tpq)
        return self.timeline.time_of_beat(tick / self.tpq) - base

    def notes(
        self, events: list[Decoded]
    ) -> tuple[list[NoteEvent], list[tuple[NoteEvent, NoteEvent]]]:
        """New shaped notes to schedule, and (provisional, real) pairs of notes scheduled
        early whose note-off is now known."""
        done: list[NoteEvent] = []
        moved: list[tuple[NoteEvent, NoteEvent]] = []
        for e in events:
            if e.kind == "on":
                t = self.offset(e.tick)
                for o in self.open.get(e.pitch, []):
                    if o.placed is not None and not o.cut:
                        # a re-strike ends the one already sounding, as ``shape`` does
                        o.cut = True
                        moved.append(self._end(o, t))
                self.open.setdefault(e.pitch, []).append(_Open(t, e.velocity))
            elif e.kind == "off" and self.open.get(e.pitch):
                o = self.open[e.pitch].pop(0)
                end = max(self.offset(e.tick), o.start)
                if o.placed is None:
                    done.append(NoteEvent(o.start, end, e.pitch, o.velocity))
                elif not o.cut:
                    moved.append(self._end(o, end))
        return self._shape(done), moved

    def due(self, now: float, until: float) -> list[NoteEvent]:
        """Notes still open that fall due by ``now`` (seconds from the answer's start),
        shaped with a provisional end at ``until``; they count as placed."""
        scale = self.shaping.tempo_scale
        out = []
        for pitch, opens in self.open.items():
            for o in opens:
                if o.placed is None and o.start / scale <= now:
                    shaped = self._shape(
                        [NoteEvent(o.start, max(until, o.start), pitch, o.velocity)]
                    )
                    o.placed = shaped[0] if shaped else _DROPPED
                    out += shaped
        return out

    def _end(self, o: _Open, end: float) -> tuple[NoteEvent, NoteEvent]:
        assert o.placed is not None
        old = o.placed
        if old is _DROPPED:
            return old, old
        real = shape(
            [NoteEvent(o.start, end, 0, o.velocity)],
            replace(
                self.shaping, polyphony=None, max_notes=None, transpose=0, lowest=0, highest=127
            ),
        )[0]
        new = replace(old, end=min(old.end, real.end))
        self.placed = [new if p is old else p for p in self.placed]
        return old, new

    def _busiest(self, n: NoteEvent) -> int:
        """Most placed notes sounding at once during ``n``."""
        overlapping = [p for p in self.placed if p.start < n.end and n.start < p.end]
        moments = [n.start] + [p.start for p in overlapping if p.start > n.start]
        return max(
            (sum(1 for p in overlapping if p.start <= m < p.end) for m in moments), default=0
        )

    def _shape(self, notes: list[NoteEvent]) -> list[NoteEvent]:
        """Shaping note by note (notes complete out of order, so polyphony and the note
        count are kept here across calls rather than by ``shape`` on one batch)."""
        if not notes:
            return []
        s = self.shaping
        per_note = replace(s, polyphony=None, max_notes=None)
        out = []
        for n in shape(notes, per_note):
            if self.full or (s.polyphony is not None and self._busiest(n) >= s.polyphony):
                continue
            self.placed.append(n)
            self.count += 1
            out.append(n)
        if len(self.placed) > 256:  # only overlaps with recent notes matter
            self.placed = self.placed[-128:]
        return out


_DROPPED = NoteEvent(0.0, 0.0, -1, 0)  # an early note the shaping dropped (polyphony, count)
LOOKAHEAD = 0.02  # seconds: an open note is scheduled this long before it falls due


class Performer:
    def __init__(
        self,
        voice: Voice,
        scheduler: Scheduler,
        timeline: Timeline,
        sampler: Sampler,
        policy: PolicyConfig,
        *,
        channel: int = 0,
        shaping: Shaping | None = None,
        quantize: float | None = None,
        now: Callable[[], float] = time.perf_counter,
        on_response: Callable[[ResponseStats], None] | None = None,
        events: Events | None = None,
    ) -> None:
        self.voice, self.scheduler, self.timeline = voice, scheduler, timeline
        self.sampler, self.policy = sampler, policy
        self.channel = channel
        self.shaping = shaping or Shaping()
        self.quantize = quantize
        self.now = now
        self.on_response = on_response or (lambda stats: None)
        self.events = events or Events()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.committed = voice.empty()
        self.epoch = 0  # bumped by the input thread whenever what is planned must go
        self.play_lock = threading.Lock()  # epoch checks and scheduling are atomic together
        self.responding = False
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.seed = sampler.sampling.seed
        self.responses = 0
        self.last_interrupt: float | None = None
        self._voided: dict[int, float] = {}  # epoch -> when an interrupt ended it
        self.failures = 0  # answers in a row whose generation failed

    # -- called from other threads --------------------------------------------------------
    def interrupt(self, t: float) -> bool:
        """The player started a new phrase: stop at once, release every note. Returns
        whether something was playing or planned."""
        with self.play_lock:
            self._voided[self.epoch] = t
            if len(self._voided) > 256:
                del self._voided[next(iter(self._voided))]
            self.epoch += 1
            self.last_interrupt = t
            busy = (
                self.responding or self.scheduler.pending() > 0 or bool(self.scheduler.sounding())
            )
            if busy:
                self.scheduler.release_all()
                self.events.emit("cancel", t=t)
            self.responding = False
        return busy

    def voided_at(self, epoch: int) -> float | None:
        """When the plan of ``epoch`` was interrupted (None: it still stands)."""
        with self.play_lock:
            return self._voided.get(epoch)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="antiphon-engine", daemon=True)
        self.thread.start()

    def stop(self, block: bool = True) -> None:
        self.stop_event.set()
        self.inbox.put(None)
        if block and self.thread is not None:
            self.thread.join(timeout=2.0)

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        name_this_python_thread()
        try:
            while not self.stop_event.is_set():
                item = self.inbox.get()
                if item is None:
                    break
                if isinstance(item, Heard):
                    item = self._merge(item)
                self._handle(item)
        except Exception as exc:  # recorded for the daemon, which releases and exits
            self.error = exc
            log.exception("engine thread stopped on an error")
            self.scheduler.release_all()

    def _handle(self, item: object) -> None:
        if isinstance(item, Heard):
            self._commit(item)
        elif isinstance(item, Cue):
            if item.epoch == self.epoch:
                self._play(item)
        elif isinstance(item, Control):
            self._control(item)
        elif isinstance(item, Swap):
            self._swap(item)

    def _swap(self, item: Swap) -> None:
        self.voice = item.voice
        self.committed = item.voice.empty()

    def _merge(self, first: Heard) -> object:
        """Batch what was heard meanwhile (a flood of input becomes one model update),
        dropping cues made stale meanwhile; the first item of another kind is returned."""
        ticks = list(first.ticks)
        player = first.player
        while True:
            try:
                nxt = self.inbox.get_nowait()
            except queue.Empty:
                return Heard(ticks, player)
            if isinstance(nxt, Cue) and nxt.epoch != self.epoch:
                continue
            if not isinstance(nxt, Heard):
                self._commit(Heard(ticks, player))
                return nxt
            ticks += nxt.ticks
            player = player or nxt.player

    def _commit(self, item: Heard) -> None:
        if item.ticks:
            self.committed = self.voice.observe(self.committed, item.ticks)

    def _drain(self) -> bool:
        """Handle what arrived meanwhile; False once the current plan is void."""
        epoch = self.epoch
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return epoch == self.epoch and not self.stop_event.is_set()
            if item is None:
                return False
            if isinstance(item, Heard):
                self._commit(item)
            elif isinstance(item, Control):
                self._control(item)
            elif isinstance(item, Swap):
                self._swap(item)
                return False  # the plan was the old model's
            elif isinstance(item, Cue) and item.epoch == self.epoch:
                self.inbox.put(item)  # a newer cue replaces this plan
                return False

    def _control(self, item: Control) -> None:
        try:
            controls.apply(self, item.name, item.value)
        except Exception:  # validated when asked for; a race with another control is not fatal
            log.exception("control %s=%r not applied", item.name, item.value)
        self.events.emit("control", values=controls.current(self))

    def _schedule(
        self, notes: list[NoteEvent], start_time: float, epoch: int, stats: ResponseStats
    ) -> bool:
        if not notes:
            return epoch == self.epoch
        with self.play_lock:
            if epoch != self.epoch:
                return False
            events = notes_to_events(notes, start_time, self.channel, tag=stats.answer)
            self.scheduler.schedule(events)
            self.events.emit(
                "planned",
                answer=stats.answer,
                notes=[
                    (start_time + n.start, start_time + n.end, n.pitch, n.velocity) for n in notes
                ],
            )
        stats.notes += len(notes)
        first = start_time + min(n.start for n in notes)
        stats.first_note_time = (
            first if stats.first_note_time is None else min(stats.first_note_time, first)
        )
        return True

    def _retime(
        self,
        moved: list[tuple[NoteEvent, NoteEvent]],
        start_time: float,
        epoch: int,
        stats: ResponseStats,
    ) -> None:
        """Notes scheduled before their note-off was known: their note-off moves to the
        real end."""
        with self.play_lock:
            if epoch != self.epoch:
                return
            for old, new in moved:
                if new.end < old.end and old.pitch >= 0:
                    off = (0x80 | self.channel, old.pitch, 0)
                    self.scheduler.retime(
                        stats.answer,
                        off,
                        start_time + old.end,
                        start_time + max(new.end, new.start + MIN_NOTE_SECONDS),
                    )

    def _steps(self, cue: Cue, start_tick: int, until_tick: int) -> Iterator[PlanStep]:
        if self.seed is not None:  # a fixed seed answers the same call the same way
            self.sampler.reseed(self.seed + self.responses)
        self.responses += 1
        # A voice may play a mode its own way: a variation of the phrase (vary), voices
        # around the player's line (accompany); otherwise every mode is ``plan``.
        plan = getattr(self.voice, self.policy.mode, self.voice.plan)
        return plan(
            self.committed,
            cue.preview,
            start_tick=start_tick,
            until_tick=until_tick,
            sampler=self.sampler,
        )

    # -- playing a cue ---------------------------------------------------------------------
    def _play(self, cue: Cue) -> None:
        """Fork the committed state, let it hear the cue's preview, generate and schedule
        notes as they complete until the cue's length is played or the plan is void."""
        epoch = cue.epoch
        tpq = self.voice.grid.tpq
        start_time = self.timeline.next_grid_time(cue.start, self.quantize)
        start_tick = round(self.timeline.beat_of(start_time) * tpq)
        length = round(cue.seconds * self.timeline.tempo / 60.0 * tpq)
        play = Playback(start_tick, start_time, self.timeline, tpq, self.shaping)
        stats = ResponseStats(
            phrase_end=cue.start,
            answer=self.responses,
            epoch=epoch,
            extra={"mode": self.policy.mode},
        )
        t0 = time.perf_counter()
        with self.play_lock:
            if epoch != self.epoch:
                return
            self.responding = True
            if self.policy.mode == "accompany":
                # A new plan replaces the old one from here on; notes already sounding
                # keep their note-offs.
                self.scheduler.cancel(after=start_time)
                self.events.emit("cancel", t=start_time)
        try:
            until = play.offset(start_tick + length)
            for step in self._steps(cue, start_tick, start_tick + length):
                stats.tokens += step.tokens
                notes, moved = play.notes(step.events)
                notes += play.due(self.now() - start_time + LOOKAHEAD, until)
                self._retime(moved, start_time, epoch, stats)
                if not self._schedule(notes, start_time, epoch, stats) or not self._drain():
                    stats.cut, stats.cut_at = True, self.last_interrupt
                    break
                if play.full:
                    break
            self.failures = 0
        except Exception as exc:  # one failed answer: released and reported, not fatal
            self.failures += 1
            stats.error = f"{type(exc).__name__}: {exc}"[:200]
            log.exception("generating an answer failed; its notes are released")
            self.interrupt(self.now())
            if self.failures >= MAX_FAILURES:
                raise
        stats.generation_seconds = time.perf_counter() - t0
        with self.play_lock:
            if epoch == self.epoch:
                self.responding = False
        self.on_response(stats)
