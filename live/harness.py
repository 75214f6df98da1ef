"""A keyboard and a listener on real JACK ports, for ``antiphon bench --live`` and the
end-to-end tests: start (or reuse) a JACK server with the dummy driver, run the daemon as a
subprocess, play into ``<name>:in`` from a second client and listen on its output.

Times are ``time.perf_counter`` in this process: when a message was sent, when a callback
saw a message arrive.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antiphon.errors import UserError
from antiphon.live.jack import JACK_LOCK, JackCycles, close_client

# A short period keeps JACK's own quantization of MIDI (one delivery per period) small
# next to what is measured: 64 frames at 48 kHz is 1.33 ms.
PERIOD_FRAMES = 64
# ``Player.send(clear=True)``: margins beyond JackCycles.EDGE after a cycle's start, and
# before the next one (the send itself, a read and EARLY)
CLEAR_AFTER = 20e-6
CLEAR_BEFORE = 120e-6
RATE = 48000


def jack_running(server: str | None = None) -> bool:
    env = {**os.environ, "JACK_NO_START_SERVER": "1"}
    if server:
        env["JACK_DEFAULT_SERVER"] = server
    if not shutil.which("jack_lsp"):
        return False
    return subprocess.run(["jack_lsp"], env=env, capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def jack_server(
    period: int = PERIOD_FRAMES, name: str | None = None, realtime: bool = False
) -> Iterator[dict]:
    """Use a running JACK server, or start ``jackd --no-realtime -d dummy`` for the block."""
    if jack_running(name):
        yield {"started": False, "period_ms": None}
        return
    jackd = shutil.which("jackd")
    if jackd is None:
        raise UserError("jackd is not installed (Debian/Ubuntu: apt install jackd2)")
    args = [jackd] + (["-n", name] if name else [])
    args += [
        "--sync",
        "--realtime" if realtime else "--no-realtime",
        "-d",
        "dummy",
        "-r",
        str(RATE),
        "-p",
        str(period),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not jack_running(name):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise UserError("could not start a JACK server (jackd -d dummy)")
            time.sleep(0.05)
        yield {"started": True, "period_ms": 1000.0 * period / RATE}
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


class DaemonProcess:
    """``antiphon live --backend jack`` as a subprocess, ready when it says so."""

    def __init__(
        self,
        args: Sequence[str] = (),
        name: str = "antiphon",
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        cmd = [sys.executable, "-m", "antiphon", "live", "--backend", "jack", "--name", name, *args]
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=None if env is None else {**os.environ, **env},
        )
        self.stderr_lines: list[str] = []
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        self.ready_line = self._wait_ready(timeout)
        self.t_ready = time.perf_counter()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip())

    def _wait_ready(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        line = result[0] if result else ""
        if "ready" not in line:
            self.kill()
            raise RuntimeError(
                f"the daemon did not become ready: {line!r} {self.stderr_lines[-5:]}"
            )
        return line.strip()

    @property
    def start_seconds(self) -> float:
        return self.t_ready - self.t_spawn

    def _memory_mb(self) -> dict[str, float]:
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
        return fields

    def heap_mb(self) -> float:
        """The anonymous part of ``rss_mb`` (heap, stacks, arenas): what a leak grows. The
        rest is file pages (code and data of the libraries, paged in as paths first run)."""
        return self._memory_mb().get("RssAnon", float("nan"))

    def rss_mb(self, shared: bool = False) -> float:
        """Resident memory of the daemon; without ``shared``, its own (anonymous and file
        pages): every JACK client maps the server's shared segments (~100 MB for the dummy
        server, more per client library instance), which are the server's memory, not ours."""
        fields = self._memory_mb()
        if shared:
            return fields.get("VmRSS", float("nan"))
        return fields.get("RssAnon", float("nan")) + fields.get("RssFile", float("nan"))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far by kernel thread name (``live.threadnames``: "jack-in",
        "midi-in", "scheduler"...; several threads of one name are summed)."""
        out: dict[str, float] = {}
        task = Path(f"/proc/{self.proc.pid}/task")
        for tid in task.iterdir():
            try:
                name = (tid / "comm").read_text().strip()
                fields = (tid / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # a thread that ended meanwhile
                continue
            ticks = int(fields[11]) + int(fields[12])
            out[name] = out.get(name, 0.0) + ticks / os.sysconf("SC_CLK_TCK")
        return out

    def signal(self, signum: int) -> float:
        t = time.perf_counter()
        self.proc.send_signal(signum)
        return t

    def wait(self, timeout: float = 5) -> int:
        return self.proc.wait(timeout)

    def kill(self, grace: float = 5.0) -> int | None:
        """Stop the daemon: SIGTERM, and SIGKILL only if it has not exited within ``grace``
        seconds. A client killed outright is not removed from a ``--sync`` server's graph
        until the server has waited out its timeout (5 s without realtime) for each of the
        daemon's JACK clients, every cycle stalled meanwhile: every other client's audio and
        MIDI stop for up to half a minute. Returns the exit status of a daemon this stopped
        (None for one that had already ended): 0 is a clean shutdown."""
        if self.proc.poll() is not None:
            return None
        self.proc.terminate()
        try:
            status = self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        self._drain.join(2)  # its last lines (a traceback on the way out) read
        return status


@dataclass
class Received:
    t: float  # when it arrived (this process's perf_counter)
    data: list[int]
    # The same arrival time: the ear dates each message from rtmidi's per-message deltas
    # (taken on JACK's clock in the process cycle), so a late poll does not move it. Kept as
    # its own field for the jitter measurement, which reads intervals on JACK's clock.
    t_jack: float = 0.0
    # The earliest cycle start it can have come in by what the ear's reader saw
    # (``RtMidiInput.earliest``): ``t`` itself where the reader knows the cycle, earlier
    # where it slept through cycles and ``t`` is its best guess among them (None: unknown).
    earliest: float | None = None


def clear_of_edge(
    cycles: JackCycles | None,
    now: Callable[[], float] = time.perf_counter,
    pause: Callable[[], None] = lambda: time.sleep(0),
) -> int | None:
    """Wait until a send now is dated to one cycle by ``JackCycles.heard``: ``EDGE`` past a
    cycle's start, and far enough before the next one to have returned ``EARLY`` before it.
    A musician's release moves by a quarter of a period at most (0.33 ms at 64 frames),
    where it would have gone out at an edge: about one send in five. Returns the counter
    read last, to pass as the read before the send (None: no cycles to read)."""
    if cycles is None:
        return None
    give_up = now() + cycles.period / 4
    while True:
        frame = cycles.observe()
        began = cycles.began(frame)
        t = now()
        if began is None or t >= give_up:
            return frame
        if cycles.EDGE + CLEAR_AFTER <= t - began <= cycles.period - CLEAR_BEFORE:
            return frame
        pause()  # a few microseconds, the GIL handed over


@dataclass
class Player:
    """A second JACK client: plays into the daemon's input, listens to its output."""

    daemon_name: str = "antiphon"
    client: str = "antiphon-player"
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        import rtmidi

        from antiphon.live.ports import RtMidiInput

        sys.setswitchinterval(0.0005)
        self._lock = threading.Lock()
        self._ts: list[float] = []
        # the counter read before each send (where read), after it, and when it returned
        self._sent_cycle: dict[float, tuple[int | None, int, float]] = {}
        self.sent_note_ons = 0
        with JACK_LOCK:  # no frame-counter read of this process while a client opens
            self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=self.client)
            self.out.open_port(self._find(self.out.get_ports(), f"{self.daemon_name}:in"))
        # The ear reads like the daemon does (rtmidi's queue, drained by a polling thread):
        # a Python callback on JACK's thread would wait for the GIL there and lose cycles
        # under a flood, and the measurement with them.
        self.inp = RtMidiInput(
            self._heard,
            backend="jack",
            client=self.client + "-ear",
            port=f"{self.daemon_name}-out:out",
            busy=lambda: True,
            # Not against broken sysex (the daemon sends none): rtmidi's per-message delta
            # dates an arrival only as well as the message before it was dated, and the
            # keep-alive brings one every 10 ms (deltas from seconds back drift by ms).
            keepalive=0.01,
        )
        time.sleep(0.05)  # JACK applies new connections a cycle or two later

    @staticmethod
    def _find(names: list[str], wanted: str) -> int:
        for i, n in enumerate(names):
            if n.startswith(wanted):
                return i
        raise RuntimeError(f"no port {wanted!r} among {names}")

    def _heard(self, data: list[int], t: float) -> None:
        with self._lock:
            # arrival times never go backwards (dated by cycle starts), so ``heard(after)``
            # can bisect: a soak's ear holds 10^5 messages and is asked every millisecond
            self._ts.append(max(t, self._ts[-1]) if self._ts else t)
            inp = self.__dict__.get("inp")  # read on the reader's thread, during the call
            self.received.append(Received(t, list(data), t, None if inp is None else inp.earliest))

    def delivered(self, sent: float) -> tuple[float, float]:
        """When what this player sent at ``sent`` (a ``send`` result) reached the daemon: the
        earliest and the latest start of the JACK cycle that can have carried it (the same
        where the send says which; ``JackCycles.heard``)."""
        with self._lock:
            before, cycle, returned = self._sent_cycle.get(sent, (None, None, None))
        heard, error = self.inp.heard_after(sent, cycle, before, returned)
        return heard - error, heard + error

    def send(self, data: Sequence[int], clear: bool = False) -> float:
        """Send now; returns when. ``clear``: first wait, up to a quarter period, until the
        send cannot fall at a cycle's edge, so that ``delivered`` knows the one cycle that
        carried it (for a phrase's release: the bench's phrase end)."""
        before = None
        if clear:
            before = clear_of_edge(self.inp.cycles)
        t = time.perf_counter()
        self.out.send_message(list(data))
        returned = time.perf_counter()
        if len(data) == 3 and data[0] & 0xF0 == 0x90 and data[2] > 0:
            self.sent_note_ons += 1
        cycle = self.inp.cycle_now()
        if cycle is not None:
            with self._lock:
                self._sent_cycle[t] = (before, cycle, returned)
                if len(self._sent_cycle) > 1 << 14:  # a flood sends 10^4 a second
                    for old in list(self._sent_cycle)[: 1 << 13]:
                        del self._sent_cycle[old]
        return t

    def note(self, pitch: int, seconds: float, velocity: int = 90, channel: int = 0) -> float:
        """Press and release a key; returns when the note-off was sent."""
        self.send([0x90 | channel, pitch, velocity])
        time.sleep(seconds)
        return self.send([0x80 | channel, pitch, 0])

    def phrase(self, pitches: Sequence[int], note: float = 0.12, gap: float = 0.03) -> float:
        last = 0.0
        for p in pitches:
            last = self.note(p, note)
            time.sleep(gap)
        return last

    def heard(self, after: float = 0.0) -> list[Received]:
        with self._lock:
            return self.received[bisect.bisect_left(self._ts, after) :]

    def note_ons(self, after: float = 0.0) -> list[Received]:
        return [r for r in self.heard(after) if r.data[0] & 0xF0 == 0x90 and r.data[2] > 0]

    def wait_for(self, predicate: Any, timeout: float, poll: float = 0.001) -> Received | None:
        deadline = time.perf_counter() + timeout
        seen = 0  # each message is tested once: the list only grows
        while True:
            with self._lock:
                new = self.received[seen:]
            seen += len(new)
            for r in new:
                if predicate(r):
                    return r
            if time.perf_counter() >= deadline:
                return None
            time.sleep(poll)

    def hanging(self) -> dict[tuple[int, int], int]:
        """Notes heard on but never off (by channel and pitch), after All Notes Off too."""
        down: dict[tuple[int, int], int] = {}
        for r in self.heard():
            kind, ch = r.data[0] & 0xF0, r.data[0] & 0x0F
            if kind == 0x90 and r.data[2] > 0:
                down[(ch, r.data[1])] = down.get((ch, r.data[1]), 0) + 1
            elif kind in (0x80, 0x90) and down.get((ch, r.data[1])):
                down[(ch, r.data[1])] -= 1
        return {k: v for k, v in down.items() if v}

    def close(self) -> None:
        self.inp.close()
        close_client(self.out)
