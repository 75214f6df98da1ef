"""MIDI ports: thin over python-rtmidi, with the logic that needs no hardware kept pure.

Backend names and port-name matching are plain functions so they can be tested without
rtmidi (which is only imported when a port is opened or probed). ``MidiOutput`` follows
mido's ``BaseOutput``: ``send`` validates, copies and locks, then the backend's ``_send``
writes; ``MemoryOutput`` records instead, for tests.

Port names. Virtual ports are ``<client>:in`` and ``<client>:out`` on ALSA and CoreMIDI
(CoreMIDI shows only an endpoint's name, so the endpoint is named that way). On JACK every
rtmidi object is its own JACK client and client names must be unique, so the output's
client is ``<client>-out``: the ports are ``antiphon:in`` and ``antiphon-out:out``. Each
port's ``port_name`` says what other programs see.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from antiphon.errors import UserError
from antiphon.live.jack import (
    JACK_LOCK,
    SETTLE_SECONDS,
    JackCycles,
    JackRoom,
    Metered,
    close_client,
    quiet_stderr,
)
from antiphon.live.jack import settle as jack_settle
from antiphon.live.threadnames import name_this_python_thread, named

log = logging.getLogger(__name__)

BACKENDS = ("auto", "alsa", "jack", "coremidi", "winmm")
_API_ATTR = {
    "alsa": "API_LINUX_ALSA",
    "jack": "API_UNIX_JACK",
    "coremidi": "API_MACOSX_CORE",
    "winmm": "API_WINDOWS_MM",
}
_HINTS = {
    "alsa": "the ALSA sequencer cannot be opened: load it (sudo modprobe snd-seq) "
    "or use --backend jack",
    "jack": "no JACK server is running: start one (jackd -d alsa, or jackd -d dummy "
    "without sound hardware)",
    "coremidi": "CoreMIDI cannot start on this machine",
    "winmm": "Windows MIDI cannot start on this machine",
}
_LIST_HINT = "`antiphon ports` lists what is available"

OnMessage = Callable[[list[int], float], None]


# --- pure helpers -------------------------------------------------------------------


def native_backends(platform: str) -> list[str]:
    """The backends ``auto`` tries on a platform, in order of preference."""
    if platform.startswith("linux"):
        return ["alsa", "jack"]
    if platform == "darwin":
        return ["coremidi"]
    if platform in ("win32", "cygwin"):
        return ["winmm"]
    return ["jack"]


def match_ports(names: Sequence[str], pattern: str) -> list[int]:
    """Indices of the names that contain ``pattern``, case-insensitively; an exact
    (case-insensitive) name comes first so ``foo:in`` is not shadowed by ``foo:in2``."""
    p = pattern.casefold()
    exact = [i for i, n in enumerate(names) if n.casefold() == p]
    return exact + [i for i, n in enumerate(names) if p in n.casefold() and i not in exact]


def find_port(names: Sequence[str], pattern: str, kind: str = "port") -> int:
    """The index of the first port matching ``pattern``; ``UserError`` listing the
    available ports when none does."""
    found = match_ports(names, pattern)
    if not found:
        available = ", ".join(repr(n) for n in names) or "none"
        raise UserError(
            f"no MIDI {kind} port matches {pattern!r} (available: {available}); {_LIST_HINT}"
        )
    return found[0]


def local_port_names(backend: str, client: str, kind: str) -> tuple[str, str, str]:
    """(rtmidi client name, rtmidi port name, name other programs see) for one of our
    ports; ``kind`` is ``"in"`` or ``"out"``. See the module docstring for why."""
    if backend == "jack":
        jack_client = client if kind == "in" else f"{client}-out"
        return jack_client, kind, f"{jack_client}:{kind}"
    if backend == "coremidi":
        return client, f"{client}:{kind}", f"{client}:{kind}"
    return client, kind, f"{client}:{kind}"


def check_message(data: Sequence[int] | bytes) -> list[int]:
    """A validated copy of one raw MIDI message; ``ValueError`` if it is malformed."""
    msg = list(data)
    if not msg:
        raise ValueError("empty MIDI message")
    if any(not isinstance(b, int) or not 0 <= b <= 255 for b in msg):
        raise ValueError(f"MIDI bytes must be ints in 0..255: {msg!r}")
    status = msg[0]
    if status < 0x80:
        raise ValueError(f"MIDI message must start with a status byte: {msg!r}")
    if status == 0xF0:
        if len(msg) < 2 or msg[-1] != 0xF7 or any(b >= 0x80 for b in msg[1:-1]):
            raise ValueError(f"malformed sysex: {msg!r}")
        return msg
    if status < 0xF0:
        size = 2 if 0xC0 <= status < 0xE0 else 3
    else:
        size = {0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1}.get(status, 1 if status >= 0xF8 else 0)
    if len(msg) != size or any(b >= 0x80 for b in msg[1:]):
        raise ValueError(f"malformed MIDI message: {msg!r}")
    return msg


# --- backends -----------------------------------------------------------------------


def _rtmidi() -> Any:
    try:
        import rtmidi
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise UserError("python-rtmidi is not installed: pip install python-rtmidi") from e
    return rtmidi


def compiled_backends() -> list[str]:
    """The backends python-rtmidi was built with, in ``BACKENDS`` order."""
    rtmidi = _rtmidi()
    apis = set(rtmidi.get_compiled_api())
    return [b for b, attr in _API_ATTR.items() if getattr(rtmidi, attr, None) in apis]


def _api(backend: str) -> int:
    return int(getattr(_rtmidi(), _API_ATTR[backend]))


def probe(backend: str) -> str | None:
    """None if ``backend`` can start here, else a one-line reason with the fix."""
    rtmidi = _rtmidi()
    try:
        with JACK_LOCK, quiet_stderr():
            midi = rtmidi.MidiIn(_api(backend), name="antiphon-probe")
            midi.delete()
    except rtmidi.RtMidiError:
        return _HINTS[backend]
    return None


def backend_status() -> dict[str, str | None]:
    """Every compiled-in backend mapped to None (usable) or why it cannot start."""
    return {b: probe(b) for b in compiled_backends()}


def resolve_backend(
    name: str = "auto",
    *,
    platform: str | None = None,
    compiled: Callable[[], list[str]] = compiled_backends,
    check: Callable[[str], str | None] = probe,
) -> str:
    """A concrete, usable backend for ``name``; ``UserError`` naming the fix otherwise.

    ``auto`` is the platform's native backend (on Linux ALSA if the sequencer opens, else
    JACK if a server runs). ``compiled`` and ``check`` are injected for tests."""
    if name not in BACKENDS:
        raise UserError(f"unknown MIDI backend {name!r}: choose one of {', '.join(BACKENDS)}")
    platform = platform or sys.platform
    built = compiled()
    if name == "auto":
        for backend in native_backends(platform):
            if backend in built and check(backend) is None:
                return backend
        if platform.startswith("linux"):
            raise UserError(
                "no MIDI backend available: start a JACK server (jackd -d dummy) or load "
                f"snd-seq (sudo modprobe snd-seq); {_LIST_HINT}"
            )
        raise UserError(f"no MIDI backend available on {platform}; {_LIST_HINT}")
    if name not in built:
        raise UserError(
            f"MIDI backend {name!r} is not compiled into python-rtmidi here "
            f"(compiled: {', '.join(built) or 'none'}); {_LIST_HINT}"
        )
    reason = check(name)
    if reason is not None:
        raise UserError(f"MIDI backend {name!r} cannot start: {reason}")
    return name


def list_ports(backend: str | None = None) -> dict[str, dict[str, list[str]]]:
    """``{backend: {"inputs": [...], "outputs": [...]}}`` for every usable backend (or
    only ``backend``, which must be usable). Inputs are ports antiphon can read from
    (what ``--input`` matches), outputs ports it can play into (``--output``)."""
    rtmidi = _rtmidi()
    if backend is not None:
        names = [resolve_backend(backend)]
    else:
        names = [b for b, reason in backend_status().items() if reason is None]
    result: dict[str, dict[str, list[str]]] = {}
    for b in names:
        try:
            with JACK_LOCK:
                with quiet_stderr():
                    midi_in = rtmidi.MidiIn(_api(b), name="antiphon-ports")
                    midi_out = rtmidi.MidiOut(_api(b), name="antiphon-ports")
                result[b] = {"inputs": midi_in.get_ports(), "outputs": midi_out.get_ports()}
                midi_in.delete()
                midi_out.delete()
        except rtmidi.RtMidiError as e:  # the server went away between probe and list
            log.warning("cannot list %s ports: %s", b, e)
    return result


def port_listing(backend: str | None = None) -> list[str]:
    """What ``antiphon ports`` prints: each backend's ports (or only ``backend``'s), or why
    the backend is unavailable."""
    status = backend_status()
    found = list_ports(backend)
    lines: list[str] = []
    for b, reason in status.items():
        if backend and b != backend:
            continue
        if b not in found:
            lines.append(f"{b}: unavailable ({reason or 'cannot list ports'})")
            continue
        ports = found[b]
        lines += [f"{b}:", "  inputs (antiphon can listen to, --input):"]
        lines += [f"    {name}" for name in ports["inputs"] or ["(none)"]]
        lines.append("  outputs (antiphon can play into, --output):")
        lines += [f"    {name}" for name in ports["outputs"] or ["(none)"]]
    return lines


def _no_virtual_ports(backend: str) -> None:
    if backend == "winmm":
        raise UserError(
            "Windows has no virtual MIDI ports: install a loopback driver (loopMIDI) and "
            "pass its ports with --input/--output"
        )


_CONNECT_ATTEMPTS = 3


class _RtPort:
    """What rtmidi inputs and outputs share: open a virtual port or connect by pattern,
    notice when a connected peer disappears, connect again."""

    def __init__(
        self,
        kind: str,
        backend: str,
        client: str,
        pattern: str | None,
        after_open: Callable[[Any], None],
        wait: Callable[[float], None],
        queue_size: int | None = None,
    ) -> None:
        self.kind = kind
        self.backend = resolve_backend(backend)
        self.pattern = pattern
        rt_client, self._local_name, self.name = local_port_names(self.backend, client, kind)
        if pattern is None:
            _no_virtual_ports(self.backend)
        rtmidi = _rtmidi()
        self.error: type[Exception] = rtmidi.RtMidiError
        # rtmidi forgets an input's callback when its port closes, so it is re-applied
        # after every open.
        self._after_open = after_open
        self._wait = wait
        cls = rtmidi.MidiIn if kind == "in" else rtmidi.MidiOut
        extra = {"queue_size_limit": queue_size} if kind == "in" and queue_size else {}
        self.peer: str | None = None
        # JACK: the client's process thread, started by the open, is named for its role
        with self._guard(), named(f"jack-{kind}"):
            try:
                self.midi = cls(_api(self.backend), name=rt_client, **extra)
            except rtmidi.RtMidiError as e:
                raise UserError(f"cannot open a MIDI {self.backend} client: {e}") from e
            try:
                if pattern is None:
                    self.midi.open_virtual_port(self._local_name)
                    self._after_open(self.midi)
                else:
                    self._connect(pattern)
            except BaseException as e:
                self.close()  # a failed open must not leave a client behind
                if isinstance(e, rtmidi.RtMidiError):
                    raise UserError(f"cannot open MIDI port {self.name!r}: {e}") from e
                raise

    def _guard(self) -> contextlib.AbstractContextManager[Any]:
        """JACK: opens and closes hold this process's JACK lock (see ``antiphon.live.jack``)."""
        return JACK_LOCK if self.backend == "jack" else contextlib.nullcontext()

    def _connect(self, pattern: str) -> None:
        """Connect to the first port matching ``pattern`` (``UserError`` if none).
        rtmidi opens by index, so the list is read again afterwards: if it changed in
        between, the index may have named another port, and the connection is redone."""
        kind = "input" if self.kind == "in" else "output"
        for _ in range(_CONNECT_ATTEMPTS):
            names = self.midi.get_ports()
            index = find_port(names, pattern, kind)
            try:
                self.midi.open_port(index, self._local_name)
            except self.error:  # the list shrank under us
                continue
            if self.midi.get_ports() == names:
                self.peer = names[index]
                self._after_open(self.midi)
                self._settle()
                return
            self.midi.close_port()
        raise UserError(f"MIDI {kind} ports kept changing while connecting to {pattern!r}")

    def _settle(self) -> None:
        if self.backend == "jack":
            self._wait(SETTLE_SECONDS)

    def is_connected(self) -> bool:
        if self.pattern is None:
            return True
        if self.peer is None:
            return False
        try:
            present = self.peer in self.midi.get_ports()
        except self.error:
            present = False
        # Once seen gone, the port stays lost until reconnect(): JACK reuses names, and
        # a peer that comes back is not connected to us again by itself. (One that goes
        # and comes back between two checks goes unnoticed; the daemon checks often.)
        if not present:
            self.peer = None
        return present

    def reconnect(self) -> bool:
        if self.is_connected():
            return True
        assert self.pattern is not None
        try:
            if not match_ports(self.midi.get_ports(), self.pattern):
                return False
            with self._guard():
                if self.midi.is_port_open():
                    if self.backend == "jack":
                        jack_settle(self._wait)  # the peer just left: its notifications
                    self.midi.close_port()
                    self._settle()
                self._connect(self.pattern)
        except (self.error, UserError) as e:
            log.warning("reconnecting to %r failed: %s", self.pattern, e)
            return False
        return True

    def close(self) -> None:
        if self.backend == "jack":
            close_client(self.midi, self._wait)
            return
        with contextlib.suppress(self.error):
            if not self.midi.is_deleted:
                self.midi.close_port()
                self.midi.delete()


class MidiInput:
    """Delivers raw messages with their arrival time (from the injected ``now``) to
    ``on_message``, from the port's reading thread: keep it short (put the message on a
    queue). An exception from it is counted, never raised into the reader."""

    def __init__(self, on_message: OnMessage, now: Callable[[], float] | None = None) -> None:
        self._on_message = on_message
        self._now = now or time.perf_counter
        self.received = 0
        self.errors = 0
        self.last_error: str | None = None
        self.port_name = ""

    def _deliver(self, data: list[int]) -> None:
        self._deliver_at(data, self._now())

    def _deliver_at(self, data: list[int], t: float) -> None:
        try:
            self.received += 1
            self._on_message(list(data), t)
        except Exception as e:  # the reading thread must survive anything
            self.errors += 1
            self.last_error = repr(e)

    def is_connected(self) -> bool:
        """False when the port connected to by pattern is gone (virtual ports: True)."""
        return True

    def reconnect(self) -> bool:
        """Connect again to a port matching the pattern; True once connected."""
        return True

    def cycle_now(self) -> int | None:
        """The transport's current cycle (JACK: the frame it began at); None: no cycles."""
        return None

    def stalled_for(self) -> float:
        """Seconds since the transport last began a cycle (0: it has no cycles, or it
        runs): a JACK server that was killed or hangs runs none."""
        return 0.0

    def heard_after(
        self,
        t: float,
        cycle: int | None = None,
        before: int | None = None,
        returned: float | None = None,
    ) -> tuple[float, float]:
        """When what is sent at ``t`` (in ``cycle``; ``before``: the cycle read just before
        the send; ``returned``: the clock when the send returned) reaches the other side,
        and how far off that can be (no transport delay here: exact)."""
        return t, 0.0

    def close(self) -> None:
        pass

    def __enter__(self) -> MidiInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryInput(MidiInput):
    """An input fed by hand, for tests of whatever consumes ``on_message``."""

    def feed(self, data: Sequence[int] | bytes) -> None:
        self._deliver(check_message(data))


class RtMidiInput(MidiInput):
    """A virtual input port ``<client>:in`` or, with ``port``, a connection to the first
    existing output port whose name contains that pattern.

    The backend's thread only queues: rtmidi keeps incoming messages in its own C++ ring
    (``queue_size`` messages) and this class's reader thread drains it. A Python callback
    would run on the backend's thread and wait for the GIL there for every message — on
    JACK that thread is the client's process cycle, and a cycle held up by the daemon's
    other threads loses that cycle's input (seen under floods and on loaded machines). The
    reader polls every ``poll`` seconds while the player is active or ``busy()`` says the
    daemon is playing (a barge-in must be heard at once), and every ``idle_poll`` after
    ``idle_after`` seconds of quiet (an idle daemon must not wake often: each wake-up costs
    CPU); arrival times come from the backend's own per-message deltas, so a reader woken
    late still stamps each message when it arrived. A drain that finds the ring full means messages
    were dropped there: counted in ``overflows`` and logged, never silent.
    """

    def __init__(
        self,
        on_message: OnMessage,
        *,
        backend: str = "auto",
        client: str = "antiphon",
        port: str | None = None,
        now: Callable[[], float] | None = None,
        queue_size: int = 1 << 16,
        poll: float = 0.0005,
        idle_poll: float = 0.01,
        idle_after: float = 1.0,
        busy: Callable[[], bool] | None = None,
        keepalive: float | None = 0.01,
        cycles: JackCycles | None = None,
    ) -> None:
        super().__init__(on_message, now)
        self.queue_size = queue_size
        self.poll, self.idle_poll, self.idle_after = poll, idle_poll, idle_after
        self._busy = busy
        self.overflows = 0
        # During an ``on_message`` call on the reader's thread: the earliest cycle start the
        # message can have come in (``_cycle_of``), None where unbounded or not on JACK.
        self.earliest: float | None = None
        self._stop = threading.Event()
        self._read_lock = threading.RLock()  # the reader, a reconnect and a close never overlap
        self._port = _RtPort(
            "in", backend, client, port, self._listen, time.sleep, queue_size=queue_size
        )
        self.backend = self._port.backend
        self.port_name = self._port.name
        self.keepalive = keepalive
        self._keeper = self._open_keeper(client) if self.backend == "jack" and keepalive else None
        self._keeper_room = JackRoom.open(patience=0.0) if self._keeper is not None else None
        # JACK delivers once a cycle: arrivals are dated by the cycle that brought them and
        # what is sent is heard at the next one (see JackCycles).
        # ``cycles``: another input's, over the same server (a listener with two ports dates
        # both by one observation of the server: no second client to wake every cycle).
        self.cycles: JackCycles | None = cycles
        if self.backend == "jack" and cycles is None:
            try:
                self.cycles = JackCycles.open(self._now, name=f"{client}-cycles")
            except OSError as e:
                log.warning("MIDI input: JACK's cycles cannot be read (%s): times are polls", e)
        self._reader = threading.Thread(target=self._read, name="antiphon-midi-in", daemon=True)
        self._reader.start()

    def _listen(self, midi: Any) -> None:
        # sysex and MIDI clock (0xF8/0xFA/0xFB/0xFC) must reach the daemon; active
        # sensing is link noise.
        midi.ignore_types(sysex=False, timing=False, active_sense=True)

    def _read(self) -> None:
        name_this_python_thread()
        last: float | None = None  # estimated arrival of the previous message
        quiet_since = probed = empty = self._now()
        cycles = self.cycles
        frame = empty_frame = -1  # the cycle under way at this poll / at the last empty one
        while not self._stop.is_set():
            drained = heard = 0
            with self._read_lock:
                seen = False  # whether ``frame`` was read just now, after the last message
                while not self._stop.is_set():
                    if cycles is not None and not seen:
                        frame = cycles.observe()
                    seen = False
                    try:
                        got = self._port.midi.get_message()
                    except self._port.error:
                        got = None
                    if got is None:
                        empty, empty_frame = self._now(), frame
                        break
                    data, delta = got
                    polled = self._now()
                    if cycles is not None:  # the cycle that brought it has begun by now
                        frame, seen = cycles.observe(), True
                    # The backend's delta since the previous message dates it precisely;
                    # the polls bound it: it arrived after the last poll that found nothing
                    # and before this one. (The backend's clock is not quite ours, so
                    # deltas alone drift: 0.4 % here, 0.4 s after a few minutes.)
                    t = polled if last is None else min(polled, max(empty, last + delta))
                    last = t
                    self.earliest = None
                    if cycles is not None:
                        t, self.earliest = self._cycle_of(cycles, t, frame, empty_frame, empty)
                    drained += 1
                    for part in split_stream(data):
                        if part != KEEPALIVE:
                            heard += 1
                            self._deliver_at(part, t)
            if drained >= self.queue_size - 1:
                self.overflows += 1
                log.warning(
                    "MIDI input: rtmidi's queue of %d messages was full: messages were dropped",
                    self.queue_size,
                )
            now = self._now()
            if heard:
                quiet_since = now
            fast = now - quiet_since < self.idle_after or (self._busy is not None and self._busy())
            # While quiet, less often: a broken sysex then delays only the first notes after
            # it (by at most the idle interval), and an idle daemon wakes less.
            every = self.keepalive if fast else max(self.keepalive or 0.0, IDLE_KEEPALIVE)
            if self._keeper is not None and now - probed >= every:
                probed = now
                with self._read_lock:  # the keeper is closed under this lock too
                    # Skipped while the server runs no cycles: rtmidi's send would spin.
                    if self._keeper_room is None or self._keeper_room.take(len(KEEPALIVE)):
                        with contextlib.suppress(Exception):
                            self._keeper.send_message(KEEPALIVE)
            self._stop.wait(self.poll if fast else self.idle_poll)

    @staticmethod
    def _cycle_of(
        cycles: JackCycles,
        t: float,
        frame: int,
        empty_frame: int,
        empty_at: float | None = None,
    ) -> tuple[float, float | None]:
        """The start of the cycle that brought a message estimated to have arrived at ``t``,
        found under way (``frame``, read once the message was there) and not there at the
        last empty poll (at ``empty_at``, in ``empty_frame``). So it came no later than
        ``frame``'s cycle (a reader that woke late dates it by its poll; a cycle dated by the
        server's timer is earlier than the poll that saw it), and in a cycle that began after
        that poll — or, where the counter has not moved since, in the cycle then under way,
        whatever the backend's deltas say.

        Unless that poll came within ``JackCycles.EDGE`` of its cycle's start: our client's
        callback, which hands the cycle's messages over, runs some way into the cycle, so
        the message may have come in that very cycle and been handed over just after the
        poll. Then the estimate decides, by the middle between the two windows where that
        cycle's and the next one's callbacks run (tolerant of an estimate off by half a
        period either way). Forcing the next cycle dated such a message a cycle late while
        saying it was sure (seen from the bench's ear).

        Returned with the earliest cycle start it can have come in by what this reader saw
        (None: unbounded): a reader that slept through cycles only knows the message came
        after its last empty poll, and one who knows when the message was sent can narrow
        that (the bench's tap: ``Tap.arrival``)."""
        began = cycles.began(frame)
        after = lowest = None
        if frame == empty_frame:
            if began is not None:
                return began, began
        else:
            after = lowest = cycles.first_after(empty_frame)
            polled_in = cycles.began(empty_frame)
            if (
                after is not None
                and polled_in is not None
                and empty_at is not None
                and empty_at - polled_in < cycles.EDGE
            ):
                lowest = polled_in
                if t < (polled_in + cycles.EDGE + after) / 2:
                    return polled_in, polled_in
            if after is not None:
                t = max(t, after)
        if began is not None:
            t = min(t, began)
        t = cycles.start(t)
        return t, None if lowest is None else min(lowest, t)

    def _open_keeper(self, client: str) -> Any:
        """JACK only: a client of ours that sends a complete sysex to our own input every
        ``keepalive`` seconds. rtmidi's JACK input treats everything after a sysex start
        without its 0xF7 as part of that sysex until some event ends with 0xF7, so one
        truncated sysex from any peer would silence the daemon for good; the keep-alive
        ends it within ``keepalive`` and ``split_stream`` recovers what came meanwhile.
        (ALSA's backend reads typed events and has no such state.)"""
        rtmidi = _rtmidi()
        keeper = None
        for attempt in range(2):
            try:
                with JACK_LOCK, named("jack-keepalive"):
                    keeper = rtmidi.MidiOut(_api("jack"), name=f"{client}-keepalive")
                    names = keeper.get_ports()
                    keeper.open_port(names.index(self._port.name), "out")
                break
            except Exception as e:  # optional: the input works without it
                if keeper is not None:
                    close_client(keeper)
                    keeper = None
                if attempt:
                    log.warning("MIDI input: no keep-alive against broken sysex (%s)", e)
                    return None
                time.sleep(SETTLE_SECONDS)
        return keeper

    def cycle_now(self) -> int | None:
        return None if self.cycles is None else self.cycles.observe()

    def stalled_for(self) -> float:
        if self.cycles is None:
            return 0.0
        seen = self.cycles.last_seen()
        return 0.0 if seen is None else max(0.0, self._now() - seen)

    def heard_after(
        self,
        t: float,
        cycle: int | None = None,
        before: int | None = None,
        returned: float | None = None,
    ) -> tuple[float, float]:
        """When a message sent at ``t`` reaches the ports connected to ours: the start of
        the JACK cycle that carries it, and how far off that can be (``JackCycles.heard``).
        Give the ``cycle_now()`` reads right after sending and right before (``before``):
        from ``t`` alone, a send just after a cycle began but before this reader saw it (up
        to a poll) would be dated a cycle early."""
        if self.cycles is None:
            return t, 0.0
        return self.cycles.heard(t, cycle, before, returned)

    @property
    def peer(self) -> str | None:
        return self._port.peer

    def is_connected(self) -> bool:
        return self._port.is_connected()

    def reconnect(self) -> bool:
        with self._read_lock:
            return self._port.reconnect()

    def close(self) -> None:
        self._stop.set()
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=1.0)
        # Not under the reader's feet, even if it outlived the join (a loaded machine); the
        # keep-alive goes first and the graph settles before our own port goes (see
        # ``antiphon.live.jack``: it was connected to that port).
        with self._read_lock:
            if self._keeper is not None:
                close_client(self._keeper)
                self._keeper = None
            self._port.close()


KEEPALIVE = [0xF0, 0x7D, 0x61, 0x6E, 0xF7]  # a sysex for non-commercial use: "an"
IDLE_KEEPALIVE = 0.05  # seconds between keep-alives while nothing is played or sounding


def split_stream(data: list[int]) -> list[list[int]]:
    """One delivered message, split where rtmidi glued several together.

    rtmidi treats everything after a sysex start without its 0xF7 as the continuation of
    that sysex, and delivers it all as one "message" once an 0xF7 arrives. Those bytes are
    really the messages that came meanwhile: status bytes start them again (realtime bytes
    stand alone), so nothing played inside a broken sysex is lost."""
    if not data or data[0] != 0xF0 or all(b < 0x80 for b in data[1:-1]):
        return [data]
    out: list[list[int]] = []
    current: list[int] = []
    for b in data:
        if b >= 0xF8:  # realtime bytes stand alone (rtmidi glues whole events: flush first)
            if current and current[0] != 0xF0:
                out.append(current)
                current = []
            out.append([b])
        elif b == 0xF7 and current[:1] == [0xF0]:
            out.append([*current, b])
            current = []
        elif b >= 0x80:
            if current:
                out.append(current)
            current = [b]
        else:
            current.append(b)
    if current:
        out.append(current)
    return out


class MidiOutput(abc.ABC):
    """Base output: ``send`` validates, copies and serializes calls from any thread;
    subclasses implement ``_send`` (and ``_close``). ``close`` waits ``flush_seconds``
    first because JACK delivers once per period and drops what is still buffered."""

    def __init__(
        self, flush_seconds: float = 0.05, wait: Callable[[float], None] | None = None
    ) -> None:
        self.flush_seconds = flush_seconds
        self._wait = wait or time.sleep
        self._lock = threading.Lock()
        self.closed = False
        self.port_name = ""

    def send(self, data: Sequence[int] | bytes) -> None:
        msg = check_message(data)
        with self._lock:
            if self.closed:
                raise ValueError(f"send on closed MIDI port {self.port_name!r}")
            self._send(msg)

    @abc.abstractmethod
    def _send(self, msg: list[int]) -> None: ...

    def close(self) -> None:
        """Idempotent; later sends raise ``ValueError``."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if self.flush_seconds > 0:
            self._wait(self.flush_seconds)
        with self._lock:
            self._close()

    def _close(self) -> None:  # noqa: B027 - optional: only ports that own a handle close one
        pass

    def settle(self) -> None:  # noqa: B027 - optional: only metered ports owe anything
        """Send what is owed from a stall of the MIDI layer, if it runs again (called
        periodically: a stall may end after the last message of an answer)."""

    def is_connected(self) -> bool:
        """False when the port connected to by pattern is gone (virtual ports: True)."""
        return True

    def reconnect(self) -> bool:
        """Connect again to a port matching the pattern; True once connected."""
        return True

    def __enter__(self) -> MidiOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryOutput(MidiOutput):
    """Records ``(t, data)`` with the injected clock, for tests."""

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        super().__init__(flush_seconds=0.0)
        self._now = now or time.perf_counter
        self.sent: list[tuple[float, list[int]]] = []
        self.port_name = "memory"

    def _send(self, msg: list[int]) -> None:
        self.sent.append((self._now(), msg))

    def messages(self) -> list[list[int]]:
        return [m for _, m in self.sent]


class RtMidiOutput(MidiOutput):
    """A virtual output port (see the module docstring for its name) or, with ``port``,
    a connection to the first existing input port whose name contains that pattern."""

    def __init__(
        self,
        *,
        backend: str = "auto",
        client: str = "antiphon",
        port: str | None = None,
        flush_seconds: float = 0.05,
        wait: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(flush_seconds, wait)
        self._port = _RtPort("out", backend, client, port, lambda midi: None, self._wait)
        self.backend = self._port.backend
        self.port_name = self._port.name
        room = JackRoom.open() if self.backend == "jack" else None
        self._metered = Metered(room, self._port.midi.send_message) if room else None

    def _send(self, msg: list[int]) -> None:
        if self._metered is None:
            self._port.midi.send_message(msg)
        else:
            self._metered.send(msg)

    def settle(self) -> None:
        if self._metered is not None:
            with self._lock:
                if not self.closed:
                    self._metered.settle()

    def _close(self) -> None:
        self._port.close()

    @property
    def peer(self) -> str | None:
        return self._port.peer

    def is_connected(self) -> bool:
        return self._port.is_connected()

    def reconnect(self) -> bool:
        # The lock keeps a send from reaching a half-reopened port.
        with self._lock:
            return not self.closed and self._port.reconnect()
