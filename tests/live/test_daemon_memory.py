"""The daemon with in-memory ports: its threads and the bundled model are real, the ports
are not, so what it sent and what it wrote to ``--stats`` can be checked message by message.
(The same behaviour over real JACK ports is in test_daemon_jack.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from antiphon.live.daemon import Daemon, DaemonConfig
from antiphon.live.policy import PolicyConfig
from antiphon.live.ports import MemoryInput, MemoryOutput
from antiphon.live.sampling import Sampling

SILENCE = 0.15


def _daemon(tmp_path: Path) -> tuple[Daemon, list[MemoryInput], MemoryOutput]:
    out = MemoryOutput()
    inputs: list[MemoryInput] = []

    def open_input(on_message):  # type: ignore[no-untyped-def]
        inputs.append(MemoryInput(on_message))
        return inputs[-1]

    config = DaemonConfig(
        policy=PolicyConfig(silence=SILENCE, min_response=0.5, max_response=1.0),
        sampling=Sampling(seed=1),
        stats=str(tmp_path / "stats.jsonl"),
    )
    daemon = Daemon(config, open_input=open_input, open_output=lambda: out)
    daemon.start()
    return daemon, inputs, out


def _phrase(port: MemoryInput, pitches: list[int]) -> float:
    for p in pitches:
        port.feed([0x90, p, 90])
        time.sleep(0.05)
        port.feed([0x80, p, 0])
        time.sleep(0.01)
    return time.perf_counter()


def _first_on_after(out: MemoryOutput, t: float, timeout: float = 3.0) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        ons = [s for s, m in list(out.sent) if s > t and m[0] & 0xF0 == 0x90 and m[2] > 0]
        if ons:
            return ons[0]
        time.sleep(0.005)
    return None


def test_stats_credit_each_answer_with_its_own_first_note(tmp_path: Path) -> None:
    daemon, (port,), out = _daemon(tmp_path)
    try:
        heard = []
        for pitches in ([60, 62, 64], [67, 65, 64, 62], [72, 71]):
            t_off = _phrase(port, pitches)
            first = _first_on_after(out, t_off)
            assert first is not None, "no answer"
            heard.append(first)
            time.sleep(0.3)  # the next phrase barges into this answer
    finally:
        daemon.stop_event.set()
        daemon.shutdown()
    rows = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    sounded = [r for r in rows if r["first_note_sent"] is not None]
    # One row per answer that sounded, each credited with its own first note: the times the
    # output port saw, not an earlier answer's note nor a later one.
    sent = sorted(r["first_note_sent"] for r in sounded)
    assert len(sent) == len(heard)
    assert all(abs(a - b) < 0.002 for a, b in zip(sent, heard))
    assert all(0 <= r["latency_ms"] < 1000 * SILENCE for r in sounded)
    assert not [r for r in rows if r["cut"] and r["first_note_sent"] is None]


def _unstarted(tmp_path: Path, clock: list[float]) -> Daemon:
    """A daemon whose threads are not started: the test hands its input thread's work
    over message by message, on a clock of its own."""
    config = DaemonConfig(
        policy=PolicyConfig(silence=SILENCE),
        sampling=Sampling(seed=1),
        stats=str(tmp_path / "stats.jsonl"),
    )
    return Daemon(
        config,
        now=lambda: clock[0],
        open_input=lambda on_message: MemoryInput(on_message),
        open_output=MemoryOutput,
    )


def test_a_flood_the_input_is_behind_on_does_not_let_its_keys_go_as_held(
    tmp_path: Path, caplog
) -> None:
    """The hold limit is about nothing played: a tick handled while messages still wait
    (the input behind a flood) lets nothing go. A loaded daemon 17 s behind a flood let
    ~30 of its keys go as "held 8-18 s", one per tick, their note-offs still waiting, and
    cued an answer to each."""
    clock = [0.0]
    daemon = _unstarted(tmp_path, clock)
    daemon._handle_input("in", [0x90, 60, 90], 0.0)
    daemon.queue.put(("in", [0x80, 60, 0], 0.0001))  # its note-off, not handled yet
    clock[0] = 9.0  # past the hold limit (8 s), on the wall clock
    daemon._handle_input("tick", [], 9.0)
    assert ("key", 0, 60) in daemon.phrase.down
    assert "treated as released" not in caplog.text
    daemon._handle_input(*daemon.queue.get())
    assert not daemon.phrase.down
    # A key truly held, with nothing waiting: let go at the limit, and the log says so.
    daemon._handle_input("in", [0x90, 62, 90], 9.0)
    clock[0] = 17.5
    daemon._handle_input("tick", [], 17.5)
    assert not daemon.phrase.down
    assert "key 62 on channel 1 held 8.5 s" in caplog.text


def test_the_input_running_behind_is_logged_once_and_in_the_stats_row(
    tmp_path: Path, caplog
) -> None:
    clock = [10.0]
    daemon = _unstarted(tmp_path, clock)
    for i in range(5):  # handled 0.3-0.7 s after they came in
        daemon._measure_behind(10.0 - 0.3 - 0.1 * i)
    assert "behind" not in caplog.text  # not over yet
    daemon._measure_behind(9.999)  # caught up
    daemon._measure_behind(9.998)
    lines = [r.getMessage() for r in caplog.records if "behind" in r.getMessage()]
    assert lines == [
        "the input ran up to 0.70 s behind what was played (5 messages handled late: a "
        "flood?); phrases played meanwhile were heard and answered late"
    ]
    assert daemon._take_behind() == pytest.approx(0.7)
    assert daemon._take_behind() == 0.0  # each row counts its own


def test_an_answer_sent_on_time_but_heard_late_says_so(tmp_path: Path) -> None:
    """The server stalled: the first note went out when due and was heard 50 ms later.
    Its row says so (``heard_late``), where ``late`` (sent late) stays false."""
    from antiphon.live.performer import ResponseStats

    daemon = _unstarted(tmp_path, [10.0])
    stats = ResponseStats(phrase_end=10.0, answer=7, first_note_time=10.0)
    daemon.input.heard_after = lambda t, *reads: (t + 0.05, 0.0)  # type: ignore[method-assign]
    row = daemon._stats_row(stats, 10.0001)
    assert row["heard_late"] and not row["late"]
    assert row["latency_ms"] == pytest.approx(50.1)
    daemon.input.heard_after = lambda t, *reads: (t + 0.0013, 0.0)  # type: ignore[method-assign]
    assert not daemon._stats_row(stats, 10.0001)["heard_late"]  # a period: on time
    # An answer that begins with a rest is not late for starting after its phrase end.
    rest = ResponseStats(phrase_end=10.0, answer=8, first_note_time=10.5)
    assert not daemon._stats_row(rest, 10.5)["heard_late"]
