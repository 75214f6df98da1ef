"""What antiphon knows of the JACK server beyond rtmidi: its cycles, the room in an output's
ring, and how to change this process's part of its graph without crashing libjack.

libjack is not safe for everything a process with several clients does at once, and each
of these crashed a test process (a segfault, the whole test run with it):

- reading the frame counter (``jack_last_frame_time``) while another client of the
  process opened;
- unregistering a port (rtmidi's ``close_port``) while that client's notification thread
  is still walking the client's port list for a latency callback. Every connection made or
  broken anywhere on the server sends one to every client (jack2's
  ``JackEngine::ComputeTotalLatencies``), and ``JackClient::PortUnRegister`` erases from
  the same ``std::list`` with no lock (jack2 issue 216, unfixed in 1.9.22): closing the
  keep-alive client, then at once the input it was connected to, or a test closing its
  player just as the daemon it played into left, raced so.

So every open and close of a client or port in this process goes through ``JACK_LOCK``
(frame reads take it too), and a close first lets the graph settle: a round trip to the
server (it handles requests one at a time and waits for each client to answer a latency
notification, so once ours returns the notifications of every earlier change were
answered) and then a short wait for changes the server had not yet seen.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import ctypes.util
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

# JACK applies a new connection, and forgets a closed client, a cycle or two later:
# messages sent before that are lost. A few periods at common buffer sizes.
SETTLE_SECONDS = 0.05

# Held for every libjack call of this process that is not a client's own realtime work:
# opening and closing clients and ports, and reading the frame counter. Re-entrant: a
# close inside a reconnect.
JACK_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr: libasound and libjack print several lines when their server
    is missing, and antiphon's own message says it better."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (e.g. some Windows GUIs): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            sys.stderr.flush()
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _libjack() -> Any | None:
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("jack") or "libjack.so.0")
    except OSError:
        return None
    lib.jack_client_open.restype = ctypes.c_void_p
    lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    for name in ("jack_get_buffer_size", "jack_get_sample_rate", "jack_last_frame_time"):
        getattr(lib, name).restype = ctypes.c_uint32
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.jack_client_close.argtypes = [ctypes.c_void_p]
    lib.jack_get_client_name.restype = ctypes.c_void_p
    lib.jack_get_client_name.argtypes = [ctypes.c_void_p]
    lib.jack_get_uuid_for_client_name.restype = ctypes.c_void_p
    lib.jack_get_uuid_for_client_name.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.jack_free.argtypes = [ctypes.c_void_p]
    lib.jack_is_realtime.restype = ctypes.c_int
    lib.jack_is_realtime.argtypes = [ctypes.c_void_p]
    lib.jack_frames_since_cycle_start.restype = ctypes.c_uint32
    lib.jack_frames_since_cycle_start.argtypes = [ctypes.c_void_p]
    return lib


SINCE_BRACKET = 20e-6  # seconds: a read of the server's timer taken as instantaneous
SINCE_READS = 4


class _Reader:
    """One libjack client per server and process, opened only to read the server's state
    and never activated, so it never wakes with the server's cycles (and cannot slow
    them). Never closed: closing a libjack client just before rtmidi deletes its own
    crashed the process now and then (seen in CI)."""

    def __init__(self, lib: Any, client: int) -> None:
        self.lib, self.client = lib, client
        with JACK_LOCK:
            self.rate = int(lib.jack_get_sample_rate(client))

    def frame(self) -> int:
        with JACK_LOCK:
            return int(self.lib.jack_last_frame_time(self.client))

    def cycle_start(self, frame: int, now: Callable[[], float]) -> float | None:
        """When the cycle that began at ``frame`` began, on ``now``'s clock, if it is still
        under way (else None): the server's record of when its driver began the cycle
        (``jack_frames_since_cycle_start``, from jack2's ``fCurrentCallback``). Not
        ``jack_frames_to_time``: that is the frame timer's DLL, a smoothed prediction that
        puts a cycle the server ran 40 ms late (a loaded CI machine) 40 ms early.

        ``since`` is read between two clock reads, and read again while they lie more than
        ``SINCE_BRACKET`` apart: a thread preempted between reading it and the clock dated
        the cycle that much late (0.15 ms, traced in a loaded run: the daemon then thought
        the cycle began after a send it had in fact carried on to the next one).

        ``since`` is whole frames, rounded down (jack2's ``FramesSinceCycleStart``): the
        start lies between ``since`` and ``since + 1`` frames back, so half a frame more is
        taken (the estimate was 0-21 us late at 48 kHz, 10 us on average)."""
        if not self.rate:
            return None
        for _ in range(SINCE_READS):
            with JACK_LOCK:
                if int(self.lib.jack_last_frame_time(self.client)) != frame:
                    return None
                before = now()
                since = int(self.lib.jack_frames_since_cycle_start(self.client))
                after = now()
                if int(self.lib.jack_last_frame_time(self.client)) != frame:
                    return None  # a cycle began meanwhile: ``since`` may be the new one's
            if after - before <= SINCE_BRACKET:
                break
        # Still wide after the retries: the middle, at most half the bracket either way.
        return (before + after) / 2 - (since + 0.5) / self.rate

    def round_trip(self) -> None:
        """One request to the server and its answer (asking for our own client's UUID)."""
        with JACK_LOCK:
            name = self.lib.jack_get_client_name(self.client)
            uuid = self.lib.jack_get_uuid_for_client_name(self.client, name) if name else None
            if uuid:
                self.lib.jack_free(uuid)


_READERS: dict[str, _Reader] = {}  # JACK server name -> its reader
_READERS_LOCK = threading.Lock()


def _reader(name: str = "antiphon-cycles") -> _Reader:
    """The reader of the running server (``JACK_DEFAULT_SERVER``); OSError without one."""
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    with _READERS_LOCK:
        if server not in _READERS:
            lib = _libjack()
            client = None
            if lib is not None:
                status = ctypes.c_int()
                no_start_server = 0x01
                with JACK_LOCK, quiet_stderr():
                    client = lib.jack_client_open(
                        name.encode(), no_start_server, ctypes.byref(status)
                    )
            if not client:
                raise OSError("no JACK server to read cycles from")
            _READERS[server] = _Reader(lib, client)
        return _READERS[server]


def server_realtime(name: str = "antiphon-cycles") -> bool | None:
    """Whether the running JACK server schedules its cycles realtime (None: no server)."""
    try:
        reader = _reader(name)
    except OSError:
        return None
    with JACK_LOCK:
        return bool(reader.lib.jack_is_realtime(reader.client))


def frames(name: str = "antiphon-cycles") -> tuple[float, int, Callable[[], int]]:
    """``(period in seconds, frames per cycle, read the frame counter)`` of the running
    server (OSError without one)."""
    reader = _reader(name)
    with JACK_LOCK:
        count = reader.lib.jack_get_buffer_size(reader.client)
        rate = reader.lib.jack_get_sample_rate(reader.client)
    period = count / rate if count and rate else 0.001
    return period, count, reader.frame


def settle(wait: Callable[[float], None] = time.sleep) -> None:
    """Let every change to the server's graph made so far be answered by this process's
    clients (see the module's doc) before one of them changes it again."""
    with contextlib.suppress(OSError):
        _reader().round_trip()
    wait(SETTLE_SECONDS)


def close_client(midi: Any, wait: Callable[[float], None] = time.sleep) -> None:
    """Close an rtmidi object on JACK: its port, then its client, once the graph has
    settled, and let the graph settle after (so the next close does not race this one's
    notifications). Never raises: a close is cleanup."""
    with JACK_LOCK, contextlib.suppress(Exception):
        if midi.is_deleted:
            return
        settle(wait)
        midi.close_port()
        midi.delete()
        wait(SETTLE_SECONDS)


class JackRoom:
    """Room in an rtmidi JACK output's ring, so that a send can never spin for good.

    rtmidi's JACK output writes each message (a 4-byte length, then its bytes) into a
    16 KB ring that its process callback empties once a cycle, and a send that finds the
    ring full spins until there is room, holding the GIL. A server that stopped running
    cycles (killed, or stalled waiting for a dead client under ``--sync``) never empties
    it: the sending thread spun at 100 % CPU and every other thread of the daemon,
    SIGTERM's handler included, froze for good (a daemon left behind by a test, seen
    running so for ten minutes). So sends are counted against the server's frame counter:
    at most ``room`` bytes per cycle begun (a third of the ring: the callbacks of the cycle
    just begun and of one the client was late for may not have run yet). Past that, the
    sender waits for the next cycle, GIL released, up to ``patience`` seconds, and then
    the message is refused; until a cycle begins again, later ones are refused at once.
    """

    RING = 16384  # RtMidi's JACK_RINGBUFFER_SIZE
    HEADER = 4  # the length rtmidi writes before each message

    def __init__(
        self,
        read_frame: Callable[[], int],
        *,
        period: float = 0.001,
        patience: float = 1.0,
        now: Callable[[], float] = time.monotonic,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self._read_frame, self.period, self.patience = read_frame, period, patience
        self._now, self._wait = now, wait
        self.room = self.RING // 3
        self._frame = read_frame()
        self._used = 0
        self.stalled = False  # refused since the last cycle began
        self.refused = 0

    @classmethod
    def open(cls, patience: float = 1.0) -> JackRoom | None:
        """Over the running JACK server; None where its frame counter cannot be read."""
        try:
            period, _, read_frame = frames()
        except OSError:
            return None
        return cls(read_frame, period=period, patience=patience)

    def _moved(self) -> bool:
        frame = self._read_frame()
        if frame == self._frame:
            return False
        self._frame, self._used, self.stalled = frame, 0, False
        return True

    def take(self, size: int, patient: bool = True) -> bool:
        """Whether a message of ``size`` bytes may be sent now (it is then counted); not
        ``patient``: refused at once rather than waiting for a cycle."""
        need = size + self.HEADER
        self._moved()
        if self._used + need > self.room:
            deadline = self._now() + (0.0 if self.stalled or not patient else self.patience)
            while not self._moved():
                if self._now() >= deadline:
                    self.stalled = True
                    self.refused += 1
                    return False
                self._wait(min(self.period / 2, 0.0005))
        self._used += need
        return True


class Metered:
    """Sends through a ``JackRoom``, keeping what a stalled server must not lose.

    A message the room refuses is dropped, except a note-off (or a note-on at velocity 0):
    that is owed, one per key, and sent before anything else once cycles run again, so a
    stall leaves no key down on the synth. ``settle`` pays what is owed without a new
    message to carry it (the stall ended after the answer's last note) and never waits.
    """

    def __init__(self, room: JackRoom, send: Callable[[list[int]], None]) -> None:
        self.room, self._send = room, send
        self.owed: dict[tuple[int, int], list[int]] = {}

    def _pay(self, patient: bool) -> bool:
        for key, off in list(self.owed.items()):
            if not self.room.take(len(off), patient):
                return False
            self._send(off)
            del self.owed[key]
        return True

    def send(self, msg: list[int]) -> None:
        room = self.room
        if self._pay(patient=True) and room.take(len(msg)):
            self._send(msg)
            return
        if msg[0] & 0xF0 == 0x80 or (msg[0] & 0xF0 == 0x90 and msg[2] == 0):
            self.owed[(msg[0] & 0x0F, msg[1])] = [0x80 | (msg[0] & 0x0F), msg[1], 0]
        if room.refused == 1 or room.refused % 1000 == 0:
            log.warning(
                "MIDI output: the JACK server has run no cycle for over %.1f s: %d messages not "
                "sent (note-offs are sent when it runs again)",
                room.patience,
                room.refused,
            )

    def settle(self) -> None:
        if not self.owed:
            return
        owed = len(self.owed)
        if self._pay(patient=False):
            log.warning("MIDI output: the JACK server runs again; %d owed note-offs sent", owed)


class JackCycles:
    """When the JACK server's cycles began, on our clock, as seen by reading its frame
    counter at every poll.

    JACK moves MIDI once a cycle: what a client sends between cycles reaches the connected
    ports at the start of the next one, and what arrives arrived at the start of the cycle
    that brought it. So both ends of a response are cycle starts. They cannot be computed
    from the nominal period: the dummy driver's cycles stretch (8 % on a loaded machine)
    and come in bursts, so a period counted from a start 10 ms ago is already a cycle off.
    They are observed instead: a poll that finds the counter moved saw a cycle begin, and
    the server says how many frames ago its driver began it (``cycle_start``). Without that
    the poll's own time dates the cycle — late by however long the poller slept: on a
    loaded machine a non-realtime daemon's reader woke 1-2 ms after the cycle began, and
    its ``--stats`` latency disagreed with a listener's by more than a period for 5 answers
    in 60. Cycles the reader slept through are spread evenly between the observations
    around them; past the last one, the nominal period.
    """

    KEEP = 1 << 13  # observed starts kept: about 10 s at 64 frames
    # ``heard``: how far into a cycle the sending client's callback can run (95 us measured
    # under --load 2, the start's estimate +-10 us in that), and how long before a cycle's
    # estimated start a send must have returned to be sure it was in the ring in time.
    EDGE = 150e-6
    EARLY = 25e-6

    def __init__(
        self,
        now: Callable[[], float],
        period: float,
        frames_per_cycle: int,
        read_frame: Callable[[], int],
        cycle_start: Callable[[int, Callable[[], float]], float | None] | None = None,
    ) -> None:
        self._now, self.period, self._read_frame = now, period, read_frame
        self.frames_per_cycle = max(1, frames_per_cycle)
        self._cycle_start = cycle_start
        self._lock = threading.Lock()
        self._frames: list[int] = []
        self._starts: list[float] = []
        # Each kept frame's place, counted from the first ever kept (``_dropped`` of them
        # trimmed since): a lookup is O(1). It walked back from the newest, and a reader
        # draining a flood asks about the cycle of its last empty poll for every message:
        # 10 s behind, that walk took 1.6 ms a message, so a drain that fell a second
        # behind (83 us a message, slower than a 17,000 message/s flood comes) never caught
        # up. Seen as a loaded daemon 17 s behind a flood, its ticks expiring the flood's
        # keys as held, and three phrases after it unanswered.
        self._where: dict[int, int] = {}
        self._dropped = 0

    @classmethod
    def open(cls, now: Callable[[], float], name: str = "antiphon-cycles") -> JackCycles:
        """Over the running JACK server (OSError without one)."""
        period, count, read_frame = frames(name)
        return cls(now, period, count, read_frame, _reader(name).cycle_start)

    def last_seen(self) -> float | None:
        """When a cycle was last seen to begin (None: none yet)."""
        with self._lock:
            return self._starts[-1] if self._starts else None

    def observe(self) -> int:
        """Read the counter (the frame the current cycle began at); a new cycle seen now is
        dated by the server's timer (or now, without one). Cheap (reads of the server's
        shared memory): called at every poll."""
        for _ in range(SINCE_READS):
            frame = self._read_frame()
            t = seen = self._now()
            with self._lock:
                if self._frames and frame == self._frames[-1]:
                    return frame
            if self._cycle_start is None:
                break
            began = self._cycle_start(frame, self._now)
            if began is not None:
                t = min(t, began)
                break
            # A cycle began since ``frame`` was read, so the server no longer says when that
            # one began, and ``t`` is late by however long this thread was held between the
            # two reads (seen on a quiet machine: a cycle dated 1.3 ms late, its GIL taken
            # by another thread, so a first note sent 0.24 ms before it was dated a cycle
            # after the listener heard it). The cycle now under way is read instead: the
            # one skipped is placed between its neighbours, as any the reader slept through.
        with self._lock:
            if self._frames:
                newer = (self._frames[-1] - frame) % (1 << 32)
                if newer < (1 << 31):
                    # Recorded meanwhile by another thread, or a later cycle was (this one
                    # held between its read and here): kept in order, so not appended
                    # after it; the cycle is placed between its neighbours, as one slept
                    # through. Appended, it took the later cycle's start, and a send in it
                    # was dated before it was sent.
                    return frame
                if t <= self._starts[-1]:
                    # The server's date is no later than the cycle before's (that one was
                    # dated late, by a sighting): a cycle of no length would date what it
                    # carried before it was sent. Its own sighting bounds it instead.
                    t = max(seen, self._starts[-1])
            self._where[frame] = self._dropped + len(self._frames)
            self._frames.append(frame)
            self._starts.append(t)
            if len(self._starts) > 2 * self.KEEP:
                for old in self._frames[: self.KEEP]:
                    self._where.pop(old, None)
                del self._frames[: self.KEEP], self._starts[: self.KEEP]
                self._dropped += self.KEEP
        return frame

    def _index(self, frame: int) -> int | None:
        """Where the cycle that began at ``frame`` is kept (None: not observed, or older
        than every kept observation); the caller holds the lock."""
        i = self._where.get(frame)
        return None if i is None else i - self._dropped

    def began(self, frame: int) -> float | None:
        """When the cycle that began at ``frame`` began (None: not observed, or older than
        every kept observation), however far back: the daemon asks about its first note's
        cycle when it writes the answer's ``--stats`` row, an answer later. (It looked at
        the last 64 observations only, 85 ms at 64 frames: the cycle of a first note sent
        just before a cycle began was then "not observed", and the answer dated a cycle
        late.)"""
        with self._lock:
            i = self._index(frame)
            return None if i is None else self._starts[i]

    def first_after(self, frame: int) -> float | None:
        """The start of the first cycle after the one that began at ``frame`` (None: not
        seen yet); one the reader slept through is placed as in ``start``."""
        seen = self._seen_after(frame)
        if seen is None:
            return None
        s0, s1, k = seen
        return s0 + (s1 - s0) / k

    def _seen_after(self, frame: int) -> tuple[float, float, int] | None:
        """The start of the cycle that began at ``frame``, of the next cycle seen after it,
        and how many cycles that is on (None: not seen yet)."""
        with self._lock:
            i = self._index(frame)
            if i is None or i + 1 == len(self._starts):
                return None
            moved = (self._frames[i + 1] - frame) % (1 << 32)  # the counter wraps
            return self._starts[i], self._starts[i + 1], max(1, moved // self.frames_per_cycle)

    def _around(self, t: float) -> tuple[float, float | None]:
        """The estimated starts of the cycle in progress at ``t`` and of the next one (None:
        not observed yet). Cycles the reader slept through (the counter moved by k > 1
        cycles between two polls) are spread evenly between the two observations."""
        with self._lock:
            i = bisect.bisect_right(self._starts, t) - 1
            if i < 0:
                return t, (self._starts[0] if self._starts else None)
            s = self._starts[i]
            if i + 1 == len(self._starts):  # beyond the last observation: nominal cycles
                begun = s + math.floor((t - s) / self.period) * self.period
                return begun, None
            gap = self._starts[i + 1] - s
            moved = (self._frames[i + 1] - self._frames[i]) % (1 << 32)  # the counter wraps
            k = max(1, moved // self.frames_per_cycle)
            j = min(k - 1, math.floor((t - s) * k / gap)) if gap > 0 else 0
            nxt = self._starts[i + 1] if j == k - 1 else s + (j + 1) * gap / k
            return s + j * gap / k, nxt

    def start(self, t: float) -> float:
        """The start of the cycle in progress at ``t``."""
        return self._around(t)[0]

    def next_start(self, t: float) -> float:
        """The start of the first cycle after ``t``: when what is sent at ``t`` is heard."""
        begun, nxt = self._around(t)
        return begun + self.period if nxt is None else nxt

    def heard(
        self,
        sent: float,
        frame: int | None,
        before: int | None = None,
        returned: float | None = None,
    ) -> tuple[float, float]:
        """When what was sent at ``sent`` (the clock read right before the send; ``returned``:
        right after it) is heard, and how far off that can be: ``frame`` is the counter read
        right after the send, ``before`` the one right before it.

        A message is heard at the start of the first cycle whose callback of the sending
        client ran after the send. That callback runs some way into its cycle: measured here
        (``jackd -R``, the dummy driver, 64 frames; 4,000 sends at random moments against a
        listener, quiet and beside two CPU-bound processes), a send 12 us after a cycle's
        estimated start already missed it, one 95 us after still made it. Nothing a client
        can read says when that callback ran, so:

        - the counter read before the send showed ``frame`` already (the cycle had begun):
          sent ``EDGE`` or more into it, the next cycle carried it; sooner, it is either;
        - a cycle began between the two reads: if the send had returned ``EARLY`` before its
          estimated start, that cycle carried it; else it is either.

        Where it is either, the middle of the two starts is returned with half their gap as
        the error, so the figure is off by at most half a period, never by a whole one. The
        daemon sends a little ahead (``Scheduler.lead``) so that its first notes, due on a
        cycle's start, are sent well before it and dated exactly.

        The next cycle's start is known where it was seen begin, or where the reader slept
        through cycles that kept their period; after a stall of the server (seen under load:
        a send 3.9 ms into a cycle of 1.33) the cycles it ran to catch up came anywhere up to
        the next one seen, so that span is the error (placed evenly, six sends in 4,000 were
        dated 2.6-9.8 ms before the listener heard them)."""
        t, error = self._heard(sent, frame, before, returned)
        if t + error >= sent:
            return t, error
        # Heard before it was sent: the observations around the send contradict it (seen
        # once in a loaded run: an answer dated 7.3 ms before its own send, which the
        # listener heard 129 ms after it, the server stalled). Say only what is sure: after
        # the send, and by the first cycle seen to begin after it.
        with self._lock:
            i = bisect.bisect_right(self._starts, sent)
            upper = self._starts[i] if i < len(self._starts) else sent + self.period
        return (sent + upper) / 2, (upper - sent) / 2

    def _heard(
        self, sent: float, frame: int | None, before: int | None, returned: float | None
    ) -> tuple[float, float]:
        began = None if frame is None else self.began(frame)
        if began is None:
            return self.next_start(sent), 0.0
        moved = 0 if before is None else (frame - before) % (1 << 32) // self.frames_per_cycle
        first = self._following(before) if moved > 1 else None  # type: ignore[arg-type]
        if first is not None:
            # The read after the send came cycles after the one it began in (the thread
            # preempted in between): the first cycle after ``before`` carried it if it was
            # in the ring in time, else one of those up to ``frame``'s.
            lo, hi = first
            if returned is not None and returned <= lo - self.EARLY:
                return (lo + hi) / 2, (hi - lo) / 2
            lo = min(max(lo, returned or lo), began)
            return (lo + began) / 2, (began - lo) / 2
        lo, hi = self._following(frame) or (began + self.period,) * 2  # type: ignore[arg-type]
        if before == frame and returned is not None:
            lo = min(max(lo, returned), hi)  # it had not begun when the send returned
        if before == frame:
            if sent - began >= self.EDGE:
                return (lo + hi) / 2, (hi - lo) / 2
        elif returned is not None and returned <= began - self.EARLY:
            return began, 0.0
        elif sent - began >= self.EDGE:  # ``before`` unread, the send long into the cycle
            return (lo + hi) / 2, (hi - lo) / 2
        return (began + hi) / 2, (hi - began) / 2

    def _following(self, frame: int) -> tuple[float, float] | None:
        """The earliest and latest start of the cycle after the one that began at ``frame``
        (None: not seen yet). One seen begin, or one the reader slept through among cycles
        that kept their period (spread evenly, as ``first_after``): exact. Among cycles that
        did not (a stall, then a burst to catch up): anywhere up to the next one seen."""
        seen = self._seen_after(frame)
        if seen is None:
            return None
        s0, s1, k = seen
        if k == 1:
            return s1, s1
        if abs((s1 - s0) - k * self.period) <= self.period / 4:
            return (s0 + (s1 - s0) / k,) * 2
        return s0, s1
