"""``antiphon bench --live``: the daemon measured from outside, over real JACK ports.

A second JACK client plays varied material (``live.material``: rhythms, chords, legato,
pedal, re-strikes, channels, barge-ins at different points, and optionally garbage,
floods, lost note-offs and pedal-ups before phrases) into the daemon and listens to it.
Per phrase: answered or missed, response latency (first answer note heard − the phrase's
end by the daemon's rule, the player's last release + silence), and the daemon's own
``--stats`` figure for the same answer beside it. Over the run: output jitter (answer onsets
on JACK's clock against the answer's tick grid), barge-in (the player's note → antiphon's
last note-off heard), what reached the daemon's input port against what its recording holds,
input drops the daemon reported, start-up time, resident memory at start and end, idle CPU.
``load`` CPU-bound processes can run beside the daemon; ``soak_minutes`` plays for that long
and compares the first minute with the last. Percentiles and the worst case, not one run's
luck.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from antiphon.atomic import read_lines
from antiphon.live.harness import PERIOD_FRAMES, DaemonProcess, Player, jack_server
from antiphon.live.jack import JackCycles
from antiphon.live.material import Event, Material, Step
from antiphon.live.session import ModelFile

TARGETS = {
    "latency_p99_ms": 10.0,  # beyond the JACK period
    "jitter_p99_ms": 2.0,
    "barge_in_p99_ms": 10.0,
    "start_s": 1.5,
    "rss_mb": 250.0,
    "idle_cpu_pct": 2.0,
}
MAX_RESPONSE = 4.0  # seconds
ANSWER_WAIT = 3.0  # seconds after the phrase end before a phrase counts as missed
IDLE_WINDOW = 15.0  # seconds of idling measured


@dataclass
class PhraseResult:
    kind: str
    before: str | None  # the disturbance played just before it
    end: float  # the phrase end (player's clock)
    latency_ms: float | None  # None: missed
    daemon_latency_ms: float | None = None  # the daemon's --stats figure for that answer
    daemon_row: bool = False  # whether --stats had a line for it
    daemon_error_ms: float | None = None  # how far off the daemon says its figure can be
    at: float = 0.0  # seconds into the run
    from_send_ms: float | None = None  # the latency from when the release was sent
    heard_at: float | None = None  # when the ear heard the first answer note
    heard_earliest: float | None = None  # ... no earlier than this (``Received.earliest``)
    daemon_end: float | None = None  # the daemon's phrase end and first send (--stats)
    daemon_sent: float | None = None
    # The phrase end by the release's send alone (None: it went out at a cycle's edge) and
    # by the tap alone: checks of each other and of the daemon's (``daemon_end``)
    send_end: float | None = None
    tap_end: float | None = None

    @property
    def label(self) -> str:
        return self.kind + (f" after {self.before}" if self.before else "")


@dataclass
class LiveBench:
    phrases: int
    period_ms: float | None
    start_s: float
    load: int = 0
    seed: int = 0
    jack_realtime: bool | None = None  # None: a server already running, not ours to know
    daemon_realtime: bool = False
    results: list[PhraseResult] = field(default_factory=list)
    jitter_ms: list[float] = field(default_factory=list)
    barge_in_ms: list[float] = field(default_factory=list)
    rss_start_mb: float = 0.0  # after the first minute (or the first phrases)
    rss_mb: float = 0.0  # at the end
    rss_shared_mb: float = 0.0  # at the end, with JACK's shared segments
    heap_start_mb: float = 0.0  # the anonymous part of rss_start_mb
    heap_mb: float = 0.0  # ... of rss_mb
    # The heap at the end of each minute of the run: a leak climbs minute after minute, an
    # allocator's high-water mark (the first flood's buffers) steps once and stays.
    heap_by_minute: list[float] = field(default_factory=list)
    idle_cpu_pct: float = 0.0
    # ... by thread (``live.threadnames``): JACK's per-cycle wake-ups against the daemon's own
    idle_cpu_by_thread: dict[str, float] = field(default_factory=dict)
    exit_s: float = 0.0
    exit_code: int | None = None
    hanging: int = 0
    sent_note_ons: int = 0  # the note-ons the player sent
    reached_note_ons: int = 0  # the player's note-ons that reached the daemon's input port
    recorded_note_ons: int | None = None  # ... and those its --record file holds
    input_drops: int = 0  # what the daemon reported dropped at its input
    # the most the daemon's input ran behind what was played, and the --stats rows where
    # it ran 100 ms behind or more (phrases then heard late: a flood not kept up with)
    input_behind_max_ms: float = 0.0
    input_behind_rows: int = 0
    daemon_late_events: int = 0
    daemon_worst_late_ms: float = 0.0  # how late the worst of those went out
    # (phrase index, late events, the worst in ms, the longest GC pause in ms) for each
    # --stats row with any: what was played there, and whether the collector held it up
    late_rows: list[tuple[int, int, float, float]] = field(default_factory=list)
    gc_pauses: int = 0  # full collections of Python's collector in the daemon
    gc_pause_max_ms: float = 0.0
    daemon_late_answers: int = 0  # answers the daemon itself flagged late
    # --stats rows of answers to no phrase of the bench's (``_read_daemon_files``)
    other_rows: list[dict] = field(default_factory=list)
    log_warnings: list[str] = field(default_factory=list)

    def _lat(self, window: tuple[float, float] | None = None) -> list[float]:
        rs = self.results
        if window is not None:
            rs = [r for r in rs if window[0] <= r.at < window[1]]
        return [r.latency_ms for r in rs if r.latency_ms is not None]

    def summary(self) -> dict:
        def pct(xs: list[float], q: float) -> float | None:
            return float(np.percentile(xs, q)) if xs else None

        lat = self._lat()
        answered = [r for r in self.results if r.latency_ms is not None]
        agree = [
            abs(r.latency_ms - r.daemon_latency_ms)
            for r in answered
            if r.daemon_latency_ms is not None and r.latency_ms is not None
        ]
        exact = [
            abs(r.latency_ms - r.daemon_latency_ms)
            for r in answered
            if r.daemon_latency_ms is not None
            and r.latency_ms is not None
            and not r.daemon_error_ms
        ]
        # The phrase end, a cycle start, as the release's send, the tap and the daemon date it
        half = (self.period_ms or 0.0) / 2e3

        def off(a: float | None, b: float | None) -> bool:
            return a is not None and b is not None and abs(a - b) > half

        by_send = [r for r in self.results if r.send_end is not None]
        end = max((r.at for r in self.results), default=0.0)
        first, last = self._lat((0.0, 60.0)), self._lat((max(end - 60.0, 60.0), end + 1))
        by_before: dict[str, list[int]] = {}
        for r in self.results:
            if r.before:
                by_before.setdefault(r.before, [0, 0])
                by_before[r.before][0] += 1
                by_before[r.before][1] += r.latency_ms is not None
        return {
            "phrases": len(self.results),
            "answered": len(answered),
            "missed": len(self.results) - len(answered),
            "load": self.load,
            "jack_realtime": self.jack_realtime,
            "daemon_realtime": self.daemon_realtime,
            "jack_period_ms": self.period_ms,
            "latency_p50_ms": pct(lat, 50),
            "latency_p99_ms": pct(lat, 99),
            "latency_max_ms": max(lat) if lat else None,
            "from_send_p99_ms": pct(
                [r.from_send_ms for r in self.results if r.from_send_ms is not None], 99
            ),
            "stats_rows": sum(r.daemon_row for r in answered),
            "stats_agree_max_ms": max(agree) if agree else None,
            "stats_agree_within_period": sum(
                1 for a in agree if self.period_ms is None or a <= self.period_ms
            ),
            # rows the daemon dated to one cycle: the listener's within half a period (the
            # same cycle; a cycle off would still pass "within one period" by microseconds)
            "stats_exact": len(exact),
            "stats_exact_same_cycle": sum(
                1 for a in exact if self.period_ms is None or a < self.period_ms / 2
            ),
            # ... and of those off the listener's cycle, the ones where the ear knew its own
            # cycle (its reader did not sleep through cycles): the daemon's date is wrong there
            "stats_exact_off_sure_ear": sum(
                1
                for r in answered
                if r.daemon_latency_ms is not None
                and not r.daemon_error_ms
                and r.latency_ms is not None
                and abs(r.latency_ms - r.daemon_latency_ms) >= (self.period_ms or 0.0) / 2
                and r.heard_earliest is not None
                and r.heard_at is not None
                and abs(r.heard_at - r.heard_earliest) < 1e-6
            ),
            "ends_by_send": len(by_send),
            "ends_tap_off_send": sum(off(r.tap_end, r.send_end) for r in by_send),
            "ends_daemon_off_send": sum(off(r.daemon_end, r.send_end) for r in by_send),
            "ends_daemon_off_tap": sum(off(r.daemon_end, r.tap_end) for r in self.results),
            "jitter_p50_ms": pct(self.jitter_ms, 50),
            "jitter_p99_ms": pct(self.jitter_ms, 99),
            "jitter_samples": len(self.jitter_ms),
            "barge_in_p50_ms": pct(self.barge_in_ms, 50),
            "barge_in_p99_ms": pct(self.barge_in_ms, 99),
            "barge_in_samples": len(self.barge_in_ms),
            "after_disturbance": by_before,
            "first_minute_p99_ms": pct(first, 99),
            "last_minute_p99_ms": pct(last, 99) if end > 120 else None,
            "start_s": self.start_s,
            "rss_start_mb": self.rss_start_mb,
            "rss_mb": self.rss_mb,
            "rss_shared_mb": self.rss_shared_mb,
            "heap_start_mb": self.heap_start_mb,
            "heap_mb": self.heap_mb,
            "heap_second_half_mb": _second_half_growth(self.heap_by_minute),
            "idle_cpu_pct": self.idle_cpu_pct,
            "idle_cpu_by_thread": self.idle_cpu_by_thread,
            "sigint_exit_s": self.exit_s,
            "exit_code": self.exit_code,
            "hanging_notes": self.hanging,
            "sent_note_ons": self.sent_note_ons,
            "reached_note_ons": self.reached_note_ons,
            "recorded_note_ons": self.recorded_note_ons,
            "input_drops": self.input_drops,
            "input_behind_max_ms": self.input_behind_max_ms,
            "input_behind_rows": self.input_behind_rows,
            "daemon_late_events": self.daemon_late_events,
            "daemon_worst_late_ms": self.daemon_worst_late_ms,
            "late_after": sorted({self.results[i].label for i, *_ in self.late_rows}),
            "late_beside_gc": sum(n for _, n, _, gc_ms in self.late_rows if gc_ms > 0),
            "gc_pauses": self.gc_pauses,
            "gc_pause_max_ms": self.gc_pause_max_ms,
            "daemon_late_answers": self.daemon_late_answers,
            "other_answers": sum(r["latency_ms"] is not None for r in self.other_rows),
            "other_answers_late": sum(
                bool(r["late"] or r.get("heard_late")) for r in self.other_rows
            ),
        }

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


def _second_half_growth(series: list[float]) -> float | None:
    """How much the heap grew over the second half of the run (a run of 4 minutes or more):
    a high-water step early on leaves it at 0, a leak shows as half its whole growth."""
    if len(series) < 4:
        return None
    return series[-1] - series[len(series) // 2]


def _burn(stop: Any) -> None:  # a CPU-bound process beside the daemon (a busy DAW)
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def _above_the_load() -> None:
    """The player stands in for a keyboard and a listener outside the machine: the load is
    the daemon's to bear, not theirs. Starved beside the CPU-bound processes, it sent phrases
    with gaps nobody played (a phrase ended early, an answer "before" its end) and dated
    what it heard late, by up to seconds (seen with --load 2). So this process's threads, the
    ear's reader among them, run at nice -10 where allowed; the daemon, the load and jackd
    keep their own priority (Linux nice is per thread; they were started before)."""
    with contextlib.suppress(OSError, ValueError):
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, int(tid), -10)


class _Load:
    def __init__(self, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.procs = [ctx.Process(target=_burn, args=(self.stop,), daemon=True) for _ in range(n)]

    def __enter__(self) -> _Load:
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(2)
            if p.is_alive():
                p.kill()


class Tap:
    """A third JACK client on the player's output: what really reached the daemon's port
    (JACK copies one output to every input connected to it), and when.

    The listener's phrase end is the cycle that brought the release to this port, dated as
    the ear dates the answer (with the ear's own observation of the server's cycles).
    Dating it from the player's send instead (the next cycle after the counter read that
    follows the send) was a cycle late whenever a cycle began between the send and the
    read, and two when the player's thread was preempted there: 7 of 420 answers of a soak
    then looked one or two periods faster to the listener than to the daemon, which was
    right both times."""

    KEEP = 1 << 16  # arrivals kept for ``arrival``: a second of the heaviest flood, and more

    def __init__(self, source_client: str, cycles: JackCycles | None = None) -> None:
        from antiphon.live.ports import RtMidiInput

        self.note_ons = 0
        self._lock = threading.Lock()
        self._heard: collections.deque[tuple[float, list[int], float | None]] = collections.deque(
            maxlen=self.KEEP
        )
        self.inp = RtMidiInput(
            self._on,
            backend="jack",
            client="antiphon-bench-tap",
            port=source_client + ":",
            queue_size=1 << 18,
            busy=lambda: True,
            keepalive=0.01,  # the player's garbage includes truncated sysex (see RtMidiInput)
            cycles=cycles,
        )

    def _on(self, data: list[int], t: float) -> None:
        if len(data) == 3 and data[0] & 0xF0 == 0x90 and data[2] > 0:
            self.note_ons += 1
        # the reader's earliest bound for this message, read on its thread during the call
        inp = self.__dict__.get("inp")
        with self._lock:
            self._heard.append((t, data, None if inp is None else inp.earliest))

    def arrival(
        self, data: Sequence[int], sent: float, lower: float | None = None, within: float = 0.5
    ) -> float | None:
        """When ``data``, sent at ``sent`` (perf_counter) and reaching the port no earlier than
        ``lower``, reached it (``first_arrival``); waits up to ``within`` seconds for it;
        None if it never came."""
        deadline = time.perf_counter() + within
        while True:
            with self._lock:
                found = first_arrival(self._heard, data, sent, lower)
            if found is not None or time.perf_counter() >= deadline:
                return found
            time.sleep(0.001)

    def close(self) -> None:
        time.sleep(0.1)
        self.inp.close()


def first_arrival(
    heard: Sequence[tuple],
    data: Sequence[int],
    sent: float,
    carried: tuple[float, float] | None = None,
) -> float | None:
    """The date of the first message ``data`` in ``heard`` (arrivals in order: the date, the
    message and, where known, the earliest cycle start the reader can place it in) that
    came of a send at ``sent``: dated no earlier than a millisecond before it. A cycle start
    read through the server's timer may lie microseconds either side of the send that made
    it; the same message sent before came a note or more earlier.

    ``carried``: the earliest and latest start of the cycle that can have carried the send
    (``Player.delivered``; the same twice where the send says which). A reader held up past
    the next cycle's start before it polled dates a message by its guess between the last
    cycle it saw empty and the one it saw the message in (seen: a release dated a period
    late, so an answer heard "before" its phrase end); the send narrows that:

    - one cycle known from the send: the first cycle both bounds allow (the player's client
      runs every cycle of a realtime server);
    - two candidates (a send at a cycle's edge): the reader's own date where it is one of
      them, else the later one its bounds allow (its guess lies after both). Taking the
      earlier whenever the reader could not rule it out dated 3 releases in 200 a cycle
      early."""
    want, found = list(data), None
    for t, got, *rest in reversed(heard):  # back to the send: the earliest match
        if t < sent - 0.001:
            break
        if got == want:
            found = t
            earliest = rest[0] if rest else None
    if found is None or carried is None or earliest is None:
        return found
    lo, hi = carried
    if hi - lo < 1e-6:
        bound = max(earliest, lo)
        return bound if bound < found else found
    near = 1e-6  # the same cycle start, read through two clients' reads of the server
    allowed = [c for c in (lo, hi) if earliest - near <= c <= found + near]
    if not allowed or any(abs(c - found) < near for c in allowed):
        return found
    return max(allowed)


def run_live_bench(
    model: str | None = None,
    *,
    phrases: int = 200,
    silence_ms: float = 400,
    seed: int = 0,
    name: str = "antiphon-bench",
    period: int = PERIOD_FRAMES,
    realtime: bool = False,
    jack_realtime: bool | None = None,
    load: int = 0,
    disturb: float = 0.15,
    soak_minutes: float | None = None,
    idle: bool = True,
) -> LiveBench:
    tick = _tick_seconds(model)
    work = Path(tempfile.mkdtemp(prefix="antiphon-bench-"))
    stats, record = work / "stats.jsonl", work / "session.mid"
    args = ["--silence-ms", str(silence_ms), "--seed", str(seed)]
    args += ["--max-response", str(MAX_RESPONSE), "--stats", str(stats), "--record", str(record)]
    # The daemon's default takes realtime where the server runs so: say which is measured.
    args += ["--realtime" if realtime else "--no-realtime"]
    if model:
        args += ["--model", str(model)]
    material = Material(seed, disturb=disturb)
    silence = silence_ms / 1000.0
    # A musician's jackd is realtime (its default); the daemon's --realtime is the choice
    # measured. A non-realtime server under load stalls its whole graph whenever one of
    # its clients' threads is starved, whatever that client does (see the README).
    jack_rt = realtime if jack_realtime is None else jack_realtime
    with jack_server(period, realtime=jack_rt) as server, _Load(load):
        daemon = DaemonProcess(args, name=name)
        player = Player(daemon_name=name, client=name + "-player")
        tap = Tap(player.client, player.inp.cycles)
        bench = LiveBench(phrases, server["period_ms"], daemon.start_seconds, load, seed)
        bench.jack_realtime = jack_rt if server["started"] else None
        bench.daemon_realtime = realtime
        _above_the_load()
        t_run = time.perf_counter()
        try:
            done = 0
            while True:
                elapsed = time.perf_counter() - t_run
                if soak_minutes is not None:
                    if elapsed > soak_minutes * 60:
                        break
                elif done >= phrases:
                    break
                for step in material.steps(1):
                    _play_step(player, tap, bench, step, silence, tick, t_run)
                    done += 1
                if not bench.rss_start_mb and (elapsed > 60 or done == min(phrases, 20)):
                    bench.rss_start_mb = daemon.rss_mb()
                    bench.heap_start_mb = daemon.heap_mb()
                if elapsed > 60 * (len(bench.heap_by_minute) + 1):
                    bench.heap_by_minute.append(daemon.heap_mb())
            time.sleep(MAX_RESPONSE + 1.0)  # let the last answer finish
            bench.rss_mb = daemon.rss_mb()
            bench.rss_shared_mb = daemon.rss_mb(shared=True)
            bench.heap_mb = daemon.heap_mb()
            if idle:
                cpu0, t0 = daemon.cpu_seconds(), time.perf_counter()
                threads0 = daemon.thread_cpu_seconds()
                # /proc counts CPU time in 10 ms ticks: 1 % of 5 s is 5 ticks, so a short
                # window swings by a fifth; 15 s halves the noise of the estimate.
                time.sleep(IDLE_WINDOW)
                cpu = daemon.cpu_seconds() - cpu0
                threads = daemon.thread_cpu_seconds()
                took = time.perf_counter() - t0
                bench.idle_cpu_pct = 100 * cpu / took
                used = {name: s - threads0.get(name, 0.0) for name, s in threads.items()}
                bench.idle_cpu_by_thread = {
                    name: round(100 * s / took, 2)
                    for name, s in sorted(used.items(), key=lambda kv: -kv[1])
                    if s > 0
                }
            t_sig = daemon.signal(signal.SIGINT)
            bench.exit_code = daemon.wait(10)
            bench.exit_s = time.perf_counter() - t_sig
            time.sleep(0.05)
            hanging = player.hanging()
            bench.hanging = sum(hanging.values())
            for (ch, pitch), _ in hanging.items():
                trail = [
                    (round(r.t - t_run, 4), r.data)
                    for r in player.heard()
                    if len(r.data) == 3 and r.data[0] & 0x0F == ch and r.data[1] == pitch
                ][-6:]
                bench.log_warnings.append(f"hanging {ch}/{pitch}: {trail}")
        finally:
            # The listening side first: the daemon is not changing the graph meanwhile
            # (see antiphon.live.jack on closing while the graph changes).
            tap.close()
            player.close()
            daemon.kill()
        bench.reached_note_ons = tap.note_ons
        bench.sent_note_ons = player.sent_note_ons
        bench.log_warnings += [line for line in daemon.stderr_lines if "antiphon:" in line]
    _read_daemon_files(bench, stats, record)
    shutil.rmtree(work, ignore_errors=True)
    return bench


def _read_daemon_files(bench: LiveBench, stats: Path, record: Path) -> None:
    rows = []
    if stats.exists():
        rows = [json.loads(line) for line in read_lines(stats)]  # never a torn last line
    for i, r in enumerate(bench.results):
        # the daemon's row for this phrase: the one whose phrase end is this one's (the
        # two processes share the machine's monotonic clock; JACK moves it by a period)
        near = [row for row in rows if abs(row["phrase_end"] - r.end) < 0.02]
        if near:
            row = min(near, key=lambda row: abs(row["phrase_end"] - r.end))
            r.daemon_row = True
            r.daemon_latency_ms = row.get("latency_ms")
            r.daemon_error_ms = row.get("latency_error_ms")
            r.daemon_end, r.daemon_sent = row["phrase_end"], row.get("first_note_sent")
            if row.get("late_events"):
                late = (
                    row["late_events"],
                    row.get("worst_late_ms", 0.0),
                    row.get("gc_pause_ms", 0.0),
                )
                bench.late_rows.append((i, *late))
    # Rows for no phrase of the bench's (an answer to a key held past the daemon's limit,
    # to a disturbance the next phrase did not play over): kept with where they came, so
    # a late one among them is not only a count in the log.
    matched = {r.daemon_end for r in bench.results}
    ends = [r.end for r in bench.results]
    for row in rows:
        if row["phrase_end"] in matched:
            continue
        i = bisect.bisect_right(ends, row["phrase_end"]) - 1
        bench.other_rows.append(
            {
                "after_phrase": i if i >= 0 else None,
                "seconds_after": None if i < 0 else row["phrase_end"] - ends[i],
                **{
                    k: row.get(k)
                    for k in ("latency_ms", "late", "heard_late", "late_ms", "unsounded", "cut")
                },
            }
        )
    bench.daemon_late_events = sum(row.get("late_events", 0) for row in rows)
    # The rows count the late events up to the last answer; the daemon's last log line
    # counts the whole session, the tail after that answer included.
    for line in bench.log_warnings:
        m = re.search(r"(\d+) events went out more than .* late this session", line)
        if m:
            bench.daemon_late_events = max(bench.daemon_late_events, int(m.group(1)))
    bench.daemon_worst_late_ms = max((row.get("worst_late_ms", 0.0) for row in rows), default=0)
    bench.gc_pauses = sum(row.get("gc_pauses", 0) for row in rows)
    bench.gc_pause_max_ms = max((row.get("gc_pause_ms", 0.0) for row in rows), default=0.0)
    bench.daemon_late_answers = sum(bool(row.get("late") or row.get("heard_late")) for row in rows)
    bench.input_drops = max((row.get("input_drops", 0) for row in rows), default=0)
    behind = [row.get("input_behind_ms", 0.0) for row in rows]
    bench.input_behind_max_ms = max(behind, default=0.0)
    bench.input_behind_rows = sum(b >= 100.0 for b in behind)
    if record.exists():
        import mido

        mid = mido.MidiFile(record)
        for track in mid.tracks:
            if any(m.type == "track_name" and m.name == "player" for m in track):
                bench.recorded_note_ons = sum(
                    1 for m in track if m.type == "note_on" and m.velocity > 0
                )


def _tick_seconds(model: str | None) -> float:
    grid = ModelFile.open(model).info.grid
    return 60.0 / 120.0 / grid["tpq"]


def _play(player: Player, events: list[Event], release: float | None = None) -> list[float]:
    """Send timed events; returns when each was really sent. Those at ``release`` (the
    phrase's end) go out clear of a cycle's edge, so the cycle that carried them is known
    from the send (``Player.send``)."""
    t0 = time.perf_counter()
    sent = []
    for at, msg in events:
        while (delay := t0 + at - time.perf_counter()) > 0:
            time.sleep(min(delay, 0.002) if delay > 0.003 else 0)
        sent.append(player.send(msg, clear=release is not None and abs(at - release) < 1e-9))
    return sent


def _play_step(
    player: Player,
    tap: Tap,
    bench: LiveBench,
    step: Step,
    silence: float,
    tick: float,
    t_run: float,
) -> None:
    if step.before is not None:
        _play(player, step.before.events)
        time.sleep(0.3)
    ph = step.phrase
    barging = bool(player.hanging())  # antiphon is sounding: this phrase barges in
    sent = _play(player, ph.events, ph.release)
    t_first = sent[0]
    if barging:
        heard = player.wait_for(lambda r: r.t > t_first and r.data[:2] == [0xB0, 123], 0.5)
        if heard is not None:
            offs = [r for r in player.heard(t_first) if r.t <= heard.t]
            bench.barge_in_ms.append(1e3 * (max(r.t for r in offs) - t_first))
    # the phrase end by the daemon's rule, on the times the events really went out
    k = max(
        (k for k, (at, _) in enumerate(ph.events) if abs(at - ph.release) < 1e-9),
        key=lambda k: sent[k],
        default=len(sent) - 1,
    )
    release = sent[k]
    first = player.wait_for(
        lambda r: r.t > release and r.data[0] & 0xF0 == 0x90 and r.data[2] > 0,
        max(0.0, release + silence - time.perf_counter()) + ANSWER_WAIT,
    )
    # Both ends on JACK's timeline, as JACK clients hear them: the release when the tap
    # heard it reach the daemon's port (the start of the cycle that carried it) and the
    # answer when its first note reached the ear. From the send call it reads up to a
    # period more: the time the release waited on this side for the next cycle.
    carried = player.delivered(release)
    reached = tap.arrival(ph.events[k][1], release, carried)
    if reached is None:
        bench.log_warnings.append(
            f"the tap did not hear the release of phrase {len(bench.results)}"
        )
    end = (carried[0] if reached is None else reached) + silence
    tap_alone = tap.arrival(ph.events[k][1], release, within=0)
    result = PhraseResult(
        ph.kind,
        step.before.kind if step.before else None,
        end,
        None if first is None else 1e3 * (first.t - end),
        at=end - t_run,
        from_send_ms=None if first is None else 1e3 * (first.t - release - silence),
        heard_at=None if first is None else first.t,
        heard_earliest=None if first is None else first.earliest,
        send_end=carried[0] + silence if carried[1] - carried[0] < 1e-6 else None,
        tap_end=None if tap_alone is None else tap_alone + silence,
    )
    bench.results.append(result)
    if first is None:
        return
    if step.barge_after is not None:
        time.sleep(step.barge_after)
    else:
        time.sleep(MAX_RESPONSE + 0.3)
    _jitter(player, bench, first.t, first.t_jack, tick)
    time.sleep(step.gap if step.barge_after is None else 0.0)


def _jitter(
    player: Player, bench: LiveBench, t_first: float, jack_first: float, tick: float
) -> None:
    # Intervals on JACK's clock (see Received.t_jack): what a synth on the port would hear.
    # Jitter is each onset's deviation from the answer's tick grid after removing the
    # answer's common offset (the median deviation): a constant delay is latency, measured
    # above, not jitter.
    onsets = [r.t_jack for r in player.note_ons(t_first)]
    errors = [(t - jack_first) - round((t - jack_first) / tick) * tick for t in onsets]
    if len(errors) > 1:
        offset = float(np.median(errors))
        bench.jitter_ms.extend(1e3 * abs(e - offset) for e in errors)


def _priorities(s: dict) -> str:
    server = {None: "a running JACK server", True: "jackd -R", False: "jackd --no-realtime"}
    daemon = "daemon --realtime" if s["daemon_realtime"] else "daemon not realtime"
    return f"{server[s['jack_realtime']]}, {daemon}"


def format_live(b: LiveBench) -> str:
    s = b.summary()
    period = s["jack_period_ms"]

    def row(label: str, value: float | None, unit: str, target: str = "") -> str:
        shown = "n/a" if value is None else f"{value:.2f}"
        return f"{label:<36}{shown:>10} {unit:<4} {target}"

    after = ", ".join(f"{k} {a}/{n}" for k, (n, a) in sorted(s["after_disturbance"].items()))
    lines = [
        f"live daemon over JACK: {s['answered']}/{s['phrases']} phrases answered, "
        f"{s['missed']} missed (seed {b.seed}; JACK period "
        f"{f'{period:.2f} ms' if period else 'of the running server'}; "
        f"{s['load']} CPU-bound processes beside it; {_priorities(s)})",
        f"  answered after a disturbance: {after or 'none played'}",
        row("response latency p50", s["latency_p50_ms"], "ms"),
        row("response latency p99", s["latency_p99_ms"], "ms", "target <= 10 ms + period"),
        row("response latency max", s["latency_max_ms"], "ms"),
        row("  p99 from the release's send call", s["from_send_p99_ms"], "ms", "(+ <= 1 period)"),
        row("  --stats lines for answers", s["stats_rows"], "", f"of {s['answered']}"),
        row(
            "  --stats vs listener, worst",
            s["stats_agree_max_ms"],
            "ms",
            f"({s['stats_agree_within_period']} within one period)",
        ),
        row(
            "  --stats rows dated to one cycle",
            s["stats_exact"],
            "",
            f"({s['stats_exact_same_cycle']} the listener's cycle, "
            f"{s['stats_exact_off_sure_ear']} off an ear sure of its cycle; the rest sent at "
            "a cycle's edge, given +- half a period)",
        ),
        row(
            "  phrase ends dated by the send",
            s["ends_by_send"],
            "",
            f"(a cycle off it: the tap {s['ends_tap_off_send']}, the daemon "
            f"{s['ends_daemon_off_send']}; the daemon off the tap: {s['ends_daemon_off_tap']})",
        ),
        row(
            "  answers the daemon flagged late",
            s["daemon_late_answers"],
            "",
            f"({s['other_answers_late']} of them among its {s['other_answers']} answers to "
            "no phrase of the bench's: a held key let go, a disturbance's end)",
        ),
        row(
            "  events sent > 2 ms late",
            s["daemon_late_events"],
            "",
            f"(daemon's scheduler; worst {s['daemon_worst_late_ms']:.1f} ms; "
            f"answering: {'; '.join(s['late_after']) or '-'})",
        ),
        row(
            "  full collections of Python's GC",
            s["gc_pauses"],
            "",
            f"(longest {s['gc_pause_max_ms']:.1f} ms, all threads held; "
            f"{s['late_beside_gc']} late events beside one)",
        ),
        row("output jitter p50", s["jitter_p50_ms"], "ms", f"({s['jitter_samples']} onsets)"),
        row("output jitter p99", s["jitter_p99_ms"], "ms", "target <= 2 ms"),
        row("barge-in p50", s["barge_in_p50_ms"], "ms", f"({s['barge_in_samples']} barge-ins)"),
        row("barge-in p99", s["barge_in_p99_ms"], "ms", "target <= 10 ms"),
        row("note-ons the player sent", s["sent_note_ons"], ""),
        row(
            "  ... that reached the port",
            s["reached_note_ons"],
            "",
            # The tap is a JACK client of the bench's own, as loaded as the player: where it
            # heard fewer than the daemon recorded, the tap lost them, not the daemon.
            "(the bench's tap)"
            if s["reached_note_ons"] >= (s["recorded_note_ons"] or 0)
            else "(the bench's tap heard fewer than the daemon recorded: the tap's loss)",
        ),
        row("  ... in the --record file", s["recorded_note_ons"], ""),
        row("  input drops the daemon reported", s["input_drops"], ""),
        row(
            "  the daemon's input behind, worst",
            s["input_behind_max_ms"],
            "ms",
            f"({s['input_behind_rows']} answers after it ran >= 100 ms behind)",
        ),
        row("start to ready", s["start_s"], "s", "target <= 1.5 s"),
        row("own resident memory, start", s["rss_start_mb"], "MB", "(after minute 1)"),
        row("own resident memory, end", s["rss_mb"], "MB", "target: start + < 5 MB"),
        row("  with JACK's shared segments", s["rss_shared_mb"], "MB"),
        row("  of which heap, start", s["heap_start_mb"], "MB", "(anonymous pages)"),
        row("  of which heap, end", s["heap_mb"], "MB"),
        row(
            "  heap growth, second half of the run",
            s["heap_second_half_mb"],
            "MB",
            f"(minutes sampled: {len(b.heap_by_minute)}; a leak keeps climbing)",
        ),
        row("idle CPU", s["idle_cpu_pct"], "%", "target <= 2 %"),
        "  by thread: "
        + (", ".join(f"{k} {v:.2f} %" for k, v in s["idle_cpu_by_thread"].items()) or "-"),
        row(
            "SIGINT to exit",
            s["sigint_exit_s"],
            "s",
            f"exit code {s['exit_code']}, {s['hanging_notes']} hanging notes",
        ),
    ]
    if s["last_minute_p99_ms"] is not None:
        lines.insert(
            5,
            row(
                "  p99 first minute / last minute",
                s["first_minute_p99_ms"],
                "ms",
                f"/ {s['last_minute_p99_ms']:.2f} ms",
            ),
        )
    return "\n".join(lines)
