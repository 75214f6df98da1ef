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
import bisect
import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from antiphon.errors import UserError

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


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr while probing: libasound and libjack print several lines
    when their server is missing, and the probe's own message says it better."""
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


def probe(backend: str) -> str | None:
    """None if ``backend`` can start here, else a one-line reason with the fix."""
    rtmidi = _rtmidi()
    try:
        with _quiet_stderr():
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
            with _quiet_stderr():
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


# JACK applies a new connection, and forgets a closed client, a cycle or two later. Messages
# sent before that are lost, and libjack can crash when a client's notification thread is
# still busy with one change while the same process unregisters a port (jack2 issues 216,
# 340), so each change gets this long to settle: a few periods at common buffer sizes.
JACK_SETTLE_SECONDS = 0.05
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
        try:
            self.midi = cls(_api(self.backend), name=rt_client, **extra)
        except rtmidi.RtMidiError as e:
            raise UserError(f"cannot open a MIDI {self.backend} client: {e}") from e
        self.peer: str | None = None
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
            self._wait(JACK_SETTLE_SECONDS)

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
            if self.midi.is_port_open():
                self.midi.close_port()
                self._settle()
            self._connect(self.pattern)
        except (self.error, UserError) as e:
            log.warning("reconnecting to %r failed: %s", self.pattern, e)
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(self.error):
            if not self.midi.is_deleted:
                self.midi.close_port()
                self.midi.delete()
                self._settle()


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

    def heard_after(self, t: float, cycle: int | None = None) -> float:
        """When what is sent at ``t`` (in ``cycle``) reaches the other side (no transport
        delay here)."""
        return t

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
    ) -> None:
        super().__init__(on_message, now)
        self.queue_size = queue_size
        self.poll, self.idle_poll, self.idle_after = poll, idle_poll, idle_after
        self._busy = busy
        self.overflows = 0
        self._stop = threading.Event()
        self._read_lock = threading.Lock()  # the reader and a reconnect never overlap
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
        self.cycles: JackCycles | None = None
        if self.backend == "jack":
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
        last: float | None = None  # estimated arrival of the previous message
        quiet_since = probed = empty = self._now()
        cycles = self.cycles
        frame = empty_frame = -1  # the cycle under way at this poll / at the last empty one
        while not self._stop.is_set():
            drained = heard = 0
            with self._read_lock:
                while not self._stop.is_set():
                    if cycles is not None:
                        frame = cycles.observe()
                    try:
                        got = self._port.midi.get_message()
                    except self._port.error:
                        got = None
                    if got is None:
                        empty, empty_frame = self._now(), frame
                        break
                    data, delta = got
                    polled = self._now()
                    # The backend's delta since the previous message dates it precisely;
                    # the polls bound it: it arrived after the last poll that found nothing
                    # and before this one. (The backend's clock is not quite ours, so
                    # deltas alone drift: 0.4 % here, 0.4 s after a few minutes.)
                    t = polled if last is None else min(polled, max(empty, last + delta))
                    last = t
                    if cycles is not None:
                        t = self._cycle_of(cycles, t, frame, empty_frame)
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
                with self._read_lock:  # it reads the frame counter too (see ``paused``)
                    # Skipped while the server runs no cycles: rtmidi's send would spin.
                    if self._keeper_room is None or self._keeper_room.take(len(KEEPALIVE)):
                        with contextlib.suppress(Exception):
                            self._keeper.send_message(KEEPALIVE)
            self._stop.wait(self.poll if fast else self.idle_poll)

    @staticmethod
    def _cycle_of(cycles: JackCycles, t: float, frame: int, empty_frame: int) -> float:
        """The start of the cycle that brought a message estimated to have arrived at ``t``.
        Not there at the last empty poll, so it came in a cycle that began after that poll
        (a client runs right after its cycle begins), unless the counter has not moved."""
        if frame != empty_frame:
            after = cycles.first_after(empty_frame)
            if after is not None:
                t = max(t, after)
        return cycles.start(t)

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
                keeper = rtmidi.MidiOut(_api("jack"), name=f"{client}-keepalive")
                names = keeper.get_ports()
                keeper.open_port(names.index(self._port.name), "out")
                break
            except Exception as e:  # optional: the input works without it
                if keeper is not None:
                    keeper.delete()
                    keeper = None
                if attempt:
                    log.warning("MIDI input: no keep-alive against broken sysex (%s)", e)
                    return None
                time.sleep(JACK_SETTLE_SECONDS)
        return keeper

    def cycle_now(self) -> int | None:
        return None if self.cycles is None else self.cycles.observe()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the reader (it reads nothing of JACK's meanwhile): open or close another JACK
        client of this process in the block. libjack reading the server's frame counter
        while a client of the same process opened crashed the process (a segfault in
        ``jack_last_frame_time``, seen in CI)."""
        with self._read_lock:
            yield

    def stalled_for(self) -> float:
        if self.cycles is None:
            return 0.0
        seen = self.cycles.last_seen()
        return 0.0 if seen is None else max(0.0, self._now() - seen)

    def heard_after(self, t: float, cycle: int | None = None) -> float:
        """When a message sent at ``t`` reaches the ports connected to ours: the start of
        JACK's next cycle, as observed (a poll's precision). Give the ``cycle_now()`` read
        right after sending: from ``t`` alone, a send just after a cycle began but before
        this reader saw it (up to a poll) would be dated a cycle early."""
        if self.cycles is None:
            return t
        if cycle is not None:
            after = self.cycles.first_after(cycle)
            if after is not None:
                return after
        return self.cycles.next_start(t)

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
        if self._keeper is not None:
            with contextlib.suppress(Exception):
                self._keeper.close_port()
                self._keeper.delete()
        self._port.close()


KEEPALIVE = [0xF0, 0x7D, 0x61, 0x6E, 0xF7]  # a sysex for non-commercial use: "an"
IDLE_KEEPALIVE = 0.05  # seconds between keep-alives while nothing is played or sounding


def _libjack() -> Any | None:
    import ctypes
    import ctypes.util

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
    return lib


def _jack_client(lib: Any, name: str) -> int | None:
    """A client opened only to read the server's state, never activated, so it never
    wakes with the server's cycles (and cannot slow them)."""
    import ctypes

    status = ctypes.c_int()
    no_start_server = 0x01
    with _quiet_stderr():
        return lib.jack_client_open(name.encode(), no_start_server, ctypes.byref(status)) or None


_READERS: dict[str, tuple[Any, int]] = {}  # JACK server name -> (libjack, reading client)
_READERS_LOCK = threading.Lock()


def _jack_frames(name: str) -> tuple[float, int, Callable[[], int]]:
    """``(period in seconds, frames per cycle, read the frame counter)`` of the running
    server (OSError without one), through one reading client per server and process,
    opened once and never closed: closing a libjack client just before rtmidi deletes its
    own crashed the process now and then (seen in CI)."""
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    with _READERS_LOCK:
        if server not in _READERS:
            lib = _libjack()
            client = None if lib is None else _jack_client(lib, name)
            if not client:
                raise OSError("no JACK server to read cycles from")
            _READERS[server] = (lib, client)
        lib, client = _READERS[server]
    frames, rate = lib.jack_get_buffer_size(client), lib.jack_get_sample_rate(client)
    period = frames / rate if frames and rate else 0.001
    return period, frames, lambda: lib.jack_last_frame_time(client)


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
            period, _, read_frame = _jack_frames("antiphon-cycles")
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
    They are observed instead: a poll that finds the counter moved saw a cycle begin no
    earlier than the poll before it. Cycles the reader slept through are spread evenly
    between the observations around them; past the last one, the nominal period.
    """

    KEEP = 1 << 13  # observed starts kept: about 10 s at 64 frames

    def __init__(
        self,
        now: Callable[[], float],
        period: float,
        frames_per_cycle: int,
        read_frame: Callable[[], int],
    ) -> None:
        self._now, self.period, self._read_frame = now, period, read_frame
        self.frames_per_cycle = max(1, frames_per_cycle)
        self._lock = threading.Lock()
        self._frames: list[int] = []
        self._starts: list[float] = []

    @classmethod
    def open(cls, now: Callable[[], float], name: str = "antiphon-cycles") -> JackCycles:
        """Over the running JACK server (OSError without one)."""
        period, frames, read_frame = _jack_frames(name)
        return cls(now, period, frames, read_frame)

    def last_seen(self) -> float | None:
        """When a cycle was last seen to begin (None: none yet)."""
        with self._lock:
            return self._starts[-1] if self._starts else None

    def observe(self) -> int:
        """Read the counter (the frame the current cycle began at); a new cycle seen now is
        dated now. Cheap (a read of the server's shared memory): called at every poll."""
        frame = self._read_frame()
        t = self._now()
        with self._lock:
            if self._frames and frame == self._frames[-1]:
                return frame
            self._frames.append(frame)
            self._starts.append(t)
            if len(self._starts) > 2 * self.KEEP:
                del self._frames[: self.KEEP], self._starts[: self.KEEP]
        return frame

    def first_after(self, frame: int) -> float | None:
        """The start of the first cycle after the one that began at ``frame`` (None: not
        seen yet); one the reader slept through is placed as in ``start``."""
        with self._lock:
            for i in range(len(self._frames) - 1, -1, -1):  # recent ones: a short walk
                if self._frames[i] == frame:
                    if i + 1 == len(self._starts):
                        return None
                    moved = (self._frames[i + 1] - frame) % (1 << 32)
                    k = max(1, moved // self.frames_per_cycle)
                    return self._starts[i] + (self._starts[i + 1] - self._starts[i]) / k
                if (frame - self._frames[i]) % (1 << 32) < (1 << 31):  # older than it
                    return None
        return None

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
