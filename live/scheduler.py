"""The scheduler: plays raw MIDI events at absolute times and owns the ledger of sounding
notes, so no note it starts is left hanging.

Events carry absolute times on the injected ``now`` clock (``t0 + offset``, as mido's
``MidiFile.play`` does), so a late wake-up delays one event and never the ones after it.
Event data is raw MIDI with its channel already applied (``shaping.notes_to_events`` does
that); the scheduler's own ``channel`` is only where ``release_all`` always sends its
pedal-up and All Notes Off.

Policies, written down:

- Ordering: due events go out in time order; at equal times note-offs go first (a note
  that ends where the next one on the same key starts must not cut the new one), other
  events keep the order they were scheduled in.
- Overrun: an event more than ``late_tolerance`` late is still sent and counted as late;
  note-offs are always sent, however late. A note-on more than ``skip_late_notes`` late is
  dropped together with its note-off (counted as skipped), so a stall does not come out
  as a burst of stale notes.
- Pairing: a note-off ends the earliest unfinished note-on of its (channel, pitch); a
  sounding note owns the first pending note-off of its key.
- Re-trigger: a note-on for a key that is already sounding first sends a note-off for it
  and drops the pending note-off the old note owned, so every note-on sent gets exactly
  one note-off (counted as retriggered).
- ``cancel`` drops notes; controllers and other messages stay, so a pedal-up is never lost.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from antiphon.live.ports import check_message
from antiphon.live.threadnames import name_this_python_thread

if TYPE_CHECKING:
    from antiphon.live.ports import MidiOutput

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (channel, pitch)
# (time, note-offs first, seq, data, tag); seq is unique, so data and tag never compare
_Entry = tuple[float, int, int, tuple[int, ...], "int | None"]
KEPT_TAGS = 256  # answers whose first-note times are remembered


@dataclass(frozen=True)
class ScheduledEvent:
    time: float  # seconds on the scheduler's ``now`` clock
    data: tuple[int, ...]  # one raw MIDI message, channel applied
    tag: int | None = None  # the answer it belongs to (its first note's send time is kept)


def note_kind(data: tuple[int, ...]) -> tuple[str, Key | None]:
    """("on" | "off" | "other", (channel, pitch) for notes). Velocity 0 is a note-off."""
    if len(data) == 3:
        kind = data[0] & 0xF0
        if kind == 0x90 and data[2] > 0:
            return "on", (data[0] & 0x0F, data[1])
        if kind in (0x80, 0x90):
            return "off", (data[0] & 0x0F, data[1])
    return "other", None


def note_off(key: Key) -> tuple[int, int, int]:
    return (0x80 | key[0], key[1], 0)


class Scheduler:
    def __init__(
        self,
        out: MidiOutput,
        now: Callable[[], float],
        wait: Callable[[float], None] | None = None,
        channel: int = 0,
        *,
        late_tolerance: float = 0.002,
        skip_late_notes: float | None = 0.1,
        poll: float = 0.01,
        realtime_priority: int | None = None,
        realtime_asked: bool = True,
        mark: Callable[[], int | None] | None = None,
        lead: float = 0.0,
    ) -> None:
        """``wait=None``: the runner sleeps on a condition that ``schedule``, ``cancel``,
        ``release_all`` and ``stop`` notify, so new material wakes it early. With an
        injected ``wait`` (e.g. a fake clock's advance) it sleeps in slices of at most
        ``poll`` seconds instead, so new material is still seen within ``poll``.
        ``realtime_priority``: the runner thread asks for SCHED_FIFO at that priority (Linux,
        where the user may: JACK's own threads run so, and can starve an ordinary thread);
        ``realtime_asked``: the user asked for it, so a refusal is a warning (else a note
        in the log: realtime was only taken where it could be had).
        ``mark``: read right before and right after an answer's first note-on goes out
        (the JACK cycle it went out in: see ``MidiInput.cycle_now``), kept beside its send
        time.
        ``lead``: each event goes out this many seconds before it is due. JACK plays what a
        client sends at the start of the next cycle, once that client's callback has run in
        it, tens of microseconds into the cycle: an answer's first note is due on a cycle
        start (its phrase's end is the start of the cycle that brought the last release,
        plus the silence, a whole number of periods), and the runner woke 40-200 us after
        it, so the note went out in that cycle or the next by a race with the callback that
        nobody can observe (seen: 4-10 answers in 200 heard a period sooner than the rest,
        and the daemon's ``--stats`` a period off for 1-2 of them). Sent a little ahead, it
        is in the ring before the cycle starts, and heard at its due cycle."""
        if not 0 <= channel <= 15:
            raise ValueError(f"MIDI channel must be 0..15, got {channel}")
        self.out = out
        self._now = now
        self._wait = wait
        self.channel = channel
        self.late_tolerance = late_tolerance
        self.skip_late_notes = skip_late_notes
        self.poll = poll
        self.realtime_priority = realtime_priority
        self.realtime_asked = realtime_asked
        self._mark = mark
        self.lead = lead
        self._first_mark: dict[int, tuple[int | None, int | None, float]] = {}
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count()
        self._pending: list[_Entry] = []
        self._sounding: set[Key] = set()
        self._channels: set[int] = set()
        self._dirty = False  # anything sent since the last release_all
        self.error: BaseException | None = None
        self._first_sent: dict[int, float] = {}  # tag -> when its first note-on went out
        self._skipped_tags: dict[int, int] = {}  # tag -> note-ons dropped as too late
        self.sent = self.late = self.skipped = self.retriggered = self.send_errors = 0
        self.max_lateness = 0.0
        self._late_since = 0  # late events since the last take_late
        self._worst_since = 0.0  # and how late the worst of them went out

    # --- planning -----------------------------------------------------------------

    def schedule(self, events: Iterable[ScheduledEvent]) -> None:
        # Validate here so a malformed event fails in the producer's thread, not later
        # in the runner's.
        entries = []
        for e in events:
            data = tuple(check_message(e.data))
            order = 0 if note_kind(data)[0] == "off" else 1
            entries.append((float(e.time), order, next(self._seq), data, e.tag))
        with self._cond:
            for entry in entries:
                bisect.insort(self._pending, entry)
            self._cond.notify_all()

    def pump(self, t: float) -> float | None:
        """Send everything due at or before ``t`` (and ``lead`` beyond) in time order; the
        next due time."""
        with self._lock:
            while self._pending and self._pending[0][0] <= t + self.lead:
                due, _, _, data, tag = self._pending[0]
                kind, key = note_kind(data)
                lateness = t - due
                if (
                    kind == "on"
                    and self.skip_late_notes is not None
                    and lateness > self.skip_late_notes
                ):
                    off = self._pairs()[0].get(0)
                    if off is not None:
                        del self._pending[off]
                    del self._pending[0]
                    self.skipped += 1
                    if tag is not None:
                        self._skipped_tags[tag] = self._skipped_tags.get(tag, 0) + 1
                        if len(self._skipped_tags) > KEPT_TAGS:  # like _first_sent: bounded
                            del self._skipped_tags[next(iter(self._skipped_tags))]
                    continue
                del self._pending[0]
                if lateness > self.late_tolerance:
                    self.late += 1
                    self._late_since += 1
                    self._worst_since = max(self._worst_since, lateness)
                self.max_lateness = max(self.max_lateness, lateness)
                if kind == "on" and key in self._sounding:
                    assert key is not None
                    owned = self._pairs()[1].get(key)
                    if owned is not None:
                        del self._pending[owned]
                    self._emit(note_off(key))
                    self.retriggered += 1
                first = tag is not None and kind == "on" and tag not in self._first_sent
                # Its own clock read, right before the send: ``t`` was read before this
                # pump, and a thread preempted since would date the send too early (and a
                # cycle that began meanwhile would look like the one that carried it).
                before = self._mark() if first and self._mark is not None else None
                sent_at = self._now() if first else t
                self._emit(data)
                if first:
                    self._first_sent[tag] = sent_at
                    returned = self._now()
                    after = None if self._mark is None else self._mark()
                    self._first_mark[tag] = (before, after, returned)
                    if len(self._first_sent) > KEPT_TAGS:
                        del self._first_sent[next(iter(self._first_sent))]
                        del self._first_mark[next(iter(self._first_mark))]
            return self._pending[0][0] if self._pending else None

    def cancel(self, after: float, *, cut: bool = False) -> int:
        """Drop the pending notes that start at or after ``after`` (note-on and its
        note-off together); notes already sounding keep their note-offs, or with ``cut``
        are ended now. Returns how many notes were dropped."""
        with self._cond:
            pairs, owned = self._pairs()
            drop: set[int] = set()
            for i, (due, _, _, data, _) in enumerate(self._pending):
                if due >= after and note_kind(data)[0] == "on":
                    drop.add(i)
                    if i in pairs:
                        drop.add(pairs[i])
            dropped = sum(1 for i in drop if note_kind(self._pending[i][3])[0] == "on")
            if cut:
                drop.update(owned.values())
            self._pending = [e for i, e in enumerate(self._pending) if i not in drop]
            if cut:
                for key in sorted(self._sounding):
                    self._emit(note_off(key))
            self._cond.notify_all()
            return dropped

    def retime(self, tag: int, data: tuple[int, ...], old: float, new: float) -> bool:
        """Move the pending event ``data`` of answer ``tag`` due at ``old`` to ``new`` (a
        note scheduled before its end was known); False if it is not pending any more."""
        with self._cond:
            for i, (due, order, _, d, t) in enumerate(self._pending):
                if t == tag and d == data and abs(due - old) < 1e-9:
                    del self._pending[i]
                    bisect.insort(self._pending, (float(new), order, next(self._seq), d, t))
                    self._cond.notify_all()
                    return True
            return False

    def release_all(self) -> list[tuple[int, ...]]:
        """Cancel everything pending, send every owed note-off, then CC64=0 and CC123 on
        each channel used; returns what was sent. Safe from any thread; a second call
        with nothing played in between sends nothing. Send errors are counted, not
        raised: this runs on the way out of failures too."""
        with self._cond:
            self._pending.clear()
            msgs: list[tuple[int, ...]] = [note_off(k) for k in sorted(self._sounding)]
            if self._dirty or msgs:
                for ch in sorted(self._channels | {self.channel}):
                    msgs += [(0xB0 | ch, 64, 0), (0xB0 | ch, 123, 0)]
            sent = []
            for m in msgs:
                try:
                    self.out.send(m)
                except Exception as e:
                    self.send_errors += 1
                    log.warning("release: cannot send %s: %s", m, e)
                else:
                    sent.append(m)
            self._sounding.clear()
            self._channels.clear()
            self._dirty = False
            self._cond.notify_all()
            return sent

    # --- state ------------------------------------------------------------------------

    def sounding(self) -> list[Key]:
        with self._lock:
            return sorted(self._sounding)

    def first_sent(self, tag: int) -> float | None:
        """When the first note-on of answer ``tag`` was sent (None: none yet, or never)."""
        with self._lock:
            return self._first_sent.get(tag)

    def first_mark(self, tag: int) -> tuple[int | None, int | None, float | None]:
        """``mark()`` as read right before and right after answer ``tag``'s first note-on
        went out, and the clock when its send returned ((None, None, None): not sent)."""
        with self._lock:
            return self._first_mark.get(tag, (None, None, None))

    def take_late(self) -> tuple[int, float]:
        """Events sent more than ``late_tolerance`` late since the last call, and how late
        the worst of them went out (seconds): each late event is taken once."""
        with self._lock:
            taken = self._late_since, self._worst_since
            self._late_since, self._worst_since = 0, 0.0
            return taken

    def skipped_of(self, tag: int) -> int:
        with self._lock:
            return self._skipped_tags.get(tag, 0)

    def busy(self) -> bool:
        """Whether anything is sounding or still to be sent."""
        with self._lock:
            return bool(self._pending or self._sounding)

    def room(self, now: float) -> float:
        """Seconds from ``now`` to the next event going out (inf: nothing scheduled)."""
        with self._lock:
            return self._pending[0][0] - self.lead - now if self._pending else float("inf")

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def stats(self) -> dict[str, float | int]:
        with self._lock:
            return {
                "sent": self.sent,
                "late": self.late,
                "skipped": self.skipped,
                "retriggered": self.retriggered,
                "send_errors": self.send_errors,
                "max_lateness": self.max_lateness,
                "pending": len(self._pending),
                "sounding": len(self._sounding),
            }

    def _emit(self, data: tuple[int, ...]) -> None:
        # The ledger changes only once the port took the message, so a failed note-off
        # stays owed and release_all tries it again.
        self.out.send(data)
        self.sent += 1
        self._dirty = True
        kind, key = note_kind(data)
        if data[0] < 0xF0:
            self._channels.add(data[0] & 0x0F)
        if key is not None and kind == "on":
            self._sounding.add(key)
        elif key is not None:
            self._sounding.discard(key)

    def _pairs(self) -> tuple[dict[int, int], dict[Key, int]]:
        """Pending note-on index -> index of the note-off that ends it, and sounding key
        -> index of the note-off it owns (FIFO per key, sounding notes first)."""
        queues: dict[Key, deque[int | None]] = {k: deque([None]) for k in self._sounding}
        pairs: dict[int, int] = {}
        owned: dict[Key, int] = {}
        for i, (_, _, _, data, _) in enumerate(self._pending):
            kind, key = note_kind(data)
            if key is None:
                continue
            if kind == "on":
                queues.setdefault(key, deque()).append(i)
            elif queues.get(key):
                j = queues[key].popleft()
                if j is None:
                    owned[key] = i
                else:
                    pairs[j] = i
        return pairs, owned

    # --- the runner thread --------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(target=self._run, name="antiphon-scheduler", daemon=True)
        self._thread.start()

    def stop(self, block: bool = True, release: bool = True) -> None:
        """Stop the runner; with ``release`` (the default) also release every note."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if release:
            self.release_all()
        thread = self._thread
        if block and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        name_this_python_thread()
        if self.realtime_priority is not None:
            _make_realtime(self.realtime_priority, self.realtime_asked)
        try:
            while not self._stop.is_set():
                with self._cond:
                    nxt = self.pump(self._now())
                    if self._stop.is_set():
                        break
                    if self._wait is None:
                        timeout = None if nxt is None else nxt - self.lead - self._now()
                        if timeout is None or timeout > 0:
                            self._cond.wait(timeout)
                        continue
                # An injected wait runs outside the lock so schedule() never blocks on it.
                delay = (
                    self.poll
                    if nxt is None
                    else min(max(nxt - self.lead - self._now(), 0.0), self.poll)
                )
                self._wait(delay)
        except Exception as e:  # recorded for the daemon; the notes are released below
            self.error = e
            log.exception("scheduler stopped on an error")
            with contextlib.suppress(Exception):
                self.release_all()


def _make_realtime(priority: int, asked: bool = True) -> bool:
    """SCHED_FIFO for the calling thread (on Linux ``sched_setscheduler(0)`` is per thread)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as e:
        (log.warning if asked else log.info)(
            "realtime scheduling refused (%s); the scheduler runs as an ordinary thread", e
        )
        return False
    log.info("the note scheduler's thread runs realtime (SCHED_FIFO, priority %d)", priority)
    return True
