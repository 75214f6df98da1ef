from __future__ import annotations

import threading
import time

import pytest

from antiphon.live.ports import MemoryOutput
from antiphon.live.scheduler import ScheduledEvent, Scheduler, note_kind


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def wait(self, dt: float) -> None:
        self.t += dt


def on(t: float, pitch: int, ch: int = 0, vel: int = 100) -> ScheduledEvent:
    return ScheduledEvent(t, (0x90 | ch, pitch, vel))


def off(t: float, pitch: int, ch: int = 0) -> ScheduledEvent:
    return ScheduledEvent(t, (0x80 | ch, pitch, 0))


def make(**kwargs: object) -> tuple[FakeClock, MemoryOutput, Scheduler]:
    clock = FakeClock()
    out = MemoryOutput(now=clock.now)
    return clock, out, Scheduler(out, clock.now, clock.wait, **kwargs)  # type: ignore[arg-type]


def run_to_end(clock: FakeClock, sched: Scheduler) -> None:
    """Drive the pure step with the fake clock, as the runner would with no overruns."""
    nxt = sched.pump(clock.t)
    while nxt is not None:
        clock.t = max(clock.t, nxt)
        nxt = sched.pump(clock.t)


def balanced(messages: list[list[int]]) -> bool:
    """Every note-on is ended by one note-off, in order, per (channel, pitch)."""
    sounding: set[tuple[int, int]] = set()
    for m in messages:
        kind, key = note_kind(tuple(m))
        if kind == "on":
            if key in sounding:
                return False
            sounding.add(key)  # type: ignore[arg-type]
        elif kind == "off":
            sounding.discard(key)  # type: ignore[arg-type]
    return not sounding


def test_sends_in_time_order_at_their_times() -> None:
    clock, out, sched = make()
    sched.schedule([off(1.0, 60), on(0.5, 62), on(0.0, 60), off(1.5, 62)])
    run_to_end(clock, sched)
    assert out.sent == [
        (0.0, [0x90, 60, 100]),
        (0.5, [0x90, 62, 100]),
        (1.0, [0x80, 60, 0]),
        (1.5, [0x80, 62, 0]),
    ]
    assert sched.sounding() == [] and sched.pending() == 0


def test_absolute_timeline_does_not_accumulate_drift() -> None:
    _, _, sched = make()
    sched.schedule([on(0.5 * i, 60 + i) for i in range(4)])
    assert sched.pump(0.001) == 0.5
    # Pumped 20 ms late: the next event stays at its absolute time, not 20 ms later.
    assert sched.pump(0.52) == 1.0
    assert sched.pump(1.0) == 1.5
    assert sched.pump(1.5) is None
    stats = sched.stats()
    assert stats["sent"] == 4
    assert stats["late"] == 1  # only the 20 ms one is beyond the 2 ms tolerance
    assert stats["max_lateness"] == pytest.approx(0.02)


def test_late_tolerance_is_a_parameter() -> None:
    _, _, sched = make(late_tolerance=0.0)
    sched.schedule([on(0.0, 60)])
    sched.pump(0.001)
    assert sched.stats()["late"] == 1


def test_pump_returns_next_due_time_and_none_when_empty() -> None:
    _, out, sched = make()
    assert sched.pump(0.0) is None
    sched.schedule([on(2.0, 60)])
    assert sched.pump(1.0) == 2.0
    assert out.sent == []


def test_note_off_goes_first_at_equal_times() -> None:
    clock, out, sched = make()
    sched.schedule([on(0.0, 60), on(1.0, 60), off(1.0, 60), off(2.0, 60)])
    run_to_end(clock, sched)
    assert out.messages() == [[0x90, 60, 100], [0x80, 60, 0], [0x90, 60, 100], [0x80, 60, 0]]
    assert sched.stats()["retriggered"] == 0


def test_velocity_zero_note_on_is_a_note_off() -> None:
    clock, _, sched = make()
    sched.schedule([on(0.0, 60), ScheduledEvent(1.0, (0x90, 60, 0))])
    run_to_end(clock, sched)
    assert sched.sounding() == []


def test_retrigger_ends_the_sounding_note_and_drops_its_note_off() -> None:
    clock, out, sched = make()
    # Two overlapping notes on one key: the second restarts it and lasts to its own end.
    sched.schedule([on(0.0, 60), off(1.0, 60), on(0.5, 60, vel=80), off(2.0, 60)])
    run_to_end(clock, sched)
    assert out.sent == [
        (0.0, [0x90, 60, 100]),
        (0.5, [0x80, 60, 0]),
        (0.5, [0x90, 60, 80]),
        (2.0, [0x80, 60, 0]),
    ]
    assert sched.stats()["retriggered"] == 1
    assert balanced(out.messages())


def test_release_all_sends_owed_note_offs_then_pedal_and_all_notes_off() -> None:
    clock, out, sched = make(channel=0)
    sched.schedule([on(0.0, 60, ch=3), on(0.0, 64), off(5.0, 60, ch=3), off(5.0, 64)])
    sched.schedule([on(2.0, 67)])
    sched.pump(0.1)
    assert sched.sounding() == [(0, 64), (3, 60)]
    sent = sched.release_all()
    assert sent == [
        (0x80, 64, 0),
        (0x83, 60, 0),
        (0xB0, 64, 0),
        (0xB0, 123, 0),
        (0xB3, 64, 0),
        (0xB3, 123, 0),
    ]
    assert out.messages()[-6:] == [list(m) for m in sent]
    assert sched.sounding() == [] and sched.pending() == 0
    # Idempotent: nothing was played since, so nothing is owed.
    assert sched.release_all() == []
    clock.t = 10.0
    assert sched.pump(clock.t) is None
    assert balanced(out.messages())


def test_release_all_from_another_thread() -> None:
    _, _, sched = make()
    sched.schedule([on(0.0, 60), off(1.0, 60)])
    sched.pump(0.0)
    result: list[list[tuple[int, ...]]] = []
    worker = threading.Thread(target=lambda: result.append(sched.release_all()))
    worker.start()
    worker.join()
    assert result[0][0] == (0x80, 60, 0)
    assert sched.sounding() == []


def test_release_all_survives_a_failing_port() -> None:
    class Broken(MemoryOutput):
        def _send(self, msg: list[int]) -> None:
            if msg[0] & 0xF0 == 0xB0:
                raise OSError("port gone")
            super()._send(msg)

    clock = FakeClock()
    out = Broken(now=clock.now)
    sched = Scheduler(out, clock.now, clock.wait)
    sched.schedule([on(0.0, 60)])
    sched.pump(0.0)
    assert sched.release_all() == [(0x80, 60, 0)]
    assert sched.stats()["send_errors"] == 2
    assert sched.sounding() == []


def test_cancel_keeps_note_pairs_consistent() -> None:
    clock, out, sched = make()
    sched.schedule([on(0.0, 60), off(1.0, 60), on(0.5, 62), off(2.0, 62)])
    sched.schedule([on(1.5, 64), off(2.5, 64), on(1.6, 60), off(3.0, 60)])
    sched.pump(0.0)
    clock.t = 0.6
    sched.pump(clock.t)
    assert sched.cancel(after=1.0) == 2
    # The sounding notes keep their note-offs; the dropped ones lose both halves.
    assert sched.pending() == 2
    run_to_end(clock, sched)
    assert out.messages() == [
        [0x90, 60, 100],
        [0x90, 62, 100],
        [0x80, 60, 0],
        [0x80, 62, 0],
    ]
    assert sched.sounding() == []


def test_cancel_with_a_later_note_on_a_sounding_key() -> None:
    clock, out, sched = make()
    sched.schedule([on(0.0, 60), off(1.0, 60), on(2.0, 60), off(3.0, 60)])
    sched.pump(0.0)
    assert sched.cancel(after=1.5) == 1
    run_to_end(clock, sched)
    assert out.messages() == [[0x90, 60, 100], [0x80, 60, 0]]


def test_cancel_cut_ends_sounding_notes_now() -> None:
    clock, out, sched = make()
    sched.schedule([on(0.0, 60), off(4.0, 60), on(3.0, 62), off(5.0, 62)])
    sched.pump(0.0)
    clock.t = 1.0
    sched.pump(clock.t)
    assert sched.cancel(after=clock.t, cut=True) == 1
    assert sched.pending() == 0
    assert out.sent[-1] == (1.0, [0x80, 60, 0])
    assert sched.sounding() == []


def test_cancel_keeps_controllers() -> None:
    clock, out, sched = make()
    sched.schedule([ScheduledEvent(2.0, (0xB0, 64, 0)), on(2.0, 60), off(3.0, 60)])
    sched.cancel(after=0.0)
    run_to_end(clock, sched)
    assert out.messages() == [[0xB0, 64, 0]]


def test_late_note_offs_are_always_sent() -> None:
    _, out, sched = make()
    sched.schedule([on(0.0, 60), off(1.0, 60)])
    sched.pump(0.0)
    sched.pump(5.0)
    assert out.messages()[-1] == [0x80, 60, 0]
    assert sched.stats()["late"] == 1 and sched.stats()["skipped"] == 0


def test_very_late_note_on_is_skipped_with_its_note_off() -> None:
    _, out, sched = make(skip_late_notes=0.1)
    sched.schedule([on(0.0, 60), off(0.3, 60), on(0.45, 62), off(1.0, 62)])
    sched.pump(0.5)  # a 500 ms stall: the first note is stale, the second is 50 ms late
    assert sched.stats()["skipped"] == 1
    sched.pump(1.0)
    assert out.messages() == [[0x90, 62, 100], [0x80, 62, 0]]
    assert balanced(out.messages())


def test_skipping_can_be_turned_off() -> None:
    _, out, sched = make(skip_late_notes=None)
    sched.schedule([on(0.0, 60), off(0.3, 60)])
    sched.pump(10.0)
    assert out.messages() == [[0x90, 60, 100], [0x80, 60, 0]]
    assert sched.stats()["late"] == 2


def test_malformed_events_fail_when_scheduled() -> None:
    _, _, sched = make()
    with pytest.raises(ValueError):
        sched.schedule([ScheduledEvent(0.0, (0x90, 200, 1))])
    assert sched.pending() == 0


class SignallingOutput(MemoryOutput):
    """Sets ``done`` once ``count`` messages have been sent."""

    def __init__(self, now: object, count: int) -> None:
        super().__init__(now=now)  # type: ignore[arg-type]
        self.count = count
        self.done = threading.Event()

    def _send(self, msg: list[int]) -> None:
        super()._send(msg)
        if len(self.sent) >= self.count:
            self.done.set()


def test_runner_thread_plays_on_the_injected_clock() -> None:
    clock = FakeClock()
    out = SignallingOutput(clock.now, count=4)
    sched = Scheduler(out, clock.now, clock.wait)
    sched.schedule([on(0.25, 60), off(0.5, 60), on(0.5, 62), off(0.75, 62)])
    sched.start()
    assert out.done.wait(5)
    sched.stop()
    assert not sched.running
    times = [t for t, _ in out.sent[:4]]
    assert times == sorted(times)
    assert all(t >= due for t, due in zip(times, [0.25, 0.5, 0.5, 0.75], strict=True))
    assert sched.error is None


def test_runner_wakes_early_for_new_material() -> None:
    import time

    out = SignallingOutput(time.perf_counter, count=1)
    sched = Scheduler(out, time.perf_counter, None)
    sched.start()  # idle: waits on the condition with no timeout
    sched.schedule([on(time.perf_counter(), 60)])
    assert out.done.wait(5)
    sched.stop(release=True)
    assert out.messages()[0] == [0x90, 60, 100]
    assert out.messages()[-2:] == [[0xB0, 64, 0], [0xB0, 123, 0]]
    assert sched.sounding() == []


def test_runner_records_an_error_and_stops() -> None:
    class Failing(MemoryOutput):
        def _send(self, msg: list[int]) -> None:
            raise RuntimeError("boom")

    clock = FakeClock()
    sched = Scheduler(Failing(now=clock.now), clock.now, clock.wait)
    sched.schedule([on(0.0, 60)])
    sched.start()
    assert sched._thread is not None
    sched._thread.join(5)
    assert isinstance(sched.error, RuntimeError)
    assert not sched.running


def _fifo_allowed() -> bool:
    import os

    result: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            result.append(True)
        except (AttributeError, OSError):
            result.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return result[0]


def test_realtime_runner_plays_from_a_fifo_thread_where_allowed() -> None:
    import os
    import time

    policies: list[int] = []

    class Watching(SignallingOutput):
        def _send(self, msg: list[int]) -> None:
            policies.append(os.sched_getscheduler(0))
            super()._send(msg)

    out = Watching(time.perf_counter, count=1)
    sched = Scheduler(out, time.perf_counter, None, realtime_priority=1)
    sched.start()
    sched.schedule([on(time.perf_counter(), 60)])
    assert out.done.wait(5)
    sched.stop(release=True)
    assert out.messages()[0] == [0x90, 60, 100]
    # Where the user may not (no rtprio), the runner says so and plays as an ordinary thread.
    assert policies[0] == (os.SCHED_FIFO if _fifo_allowed() else os.SCHED_OTHER)
    assert threading.current_thread() is threading.main_thread()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # only the runner thread changed


def test_the_cycle_an_answers_first_note_went_out_in_is_kept_beside_its_send_time() -> None:
    """Read right before and right after the first note-on's send: the same cycle in both
    says no cycle began between them, whatever the estimate of its start says."""
    cycle = iter(range(100, 10_000, 64))
    sent_when_read: list[int] = []

    def mark() -> int:
        sent_when_read.append(len(out.messages()))
        return next(cycle)

    clock, out, sched = make(mark=mark)
    sched.schedule(
        [ScheduledEvent(0.1, (0x90, 60, 90), tag=1), ScheduledEvent(0.2, (0x80, 60, 0), tag=1)]
    )
    sched.schedule(
        [ScheduledEvent(0.3, (0x90, 62, 90), tag=2), ScheduledEvent(0.35, (0x90, 64, 90), tag=2)]
    )
    run_to_end(clock, sched)
    # read twice per answer, around its first note-on: never for note-offs or later notes
    assert (sched.first_sent(1), sched.first_mark(1)) == (0.1, (100, 164, 0.1))
    assert (sched.first_sent(2), sched.first_mark(2)) == (0.3, (228, 292, 0.3))
    assert sent_when_read == [0, 1, 2, 3]  # before the send, after it; twice
    assert sched.first_mark(3) == (None, None, None)


def test_an_answers_first_note_is_dated_by_the_clock_at_its_send_not_at_the_pump() -> None:
    """A pump is given the time read before it; a thread preempted between that read and
    the send (a loaded machine) must not date the send, and the cycle it went out in, early."""
    clock, _out, sched = make(mark=lambda: 7)
    sched.schedule([ScheduledEvent(0.1, (0x90, 60, 90), tag=1)])
    clock.t = 0.1025  # the thread resumed 2.5 ms after the pump's time was read
    sched.pump(0.1)
    assert sched.first_sent(1) == 0.1025


def test_per_answer_bookkeeping_stays_bounded_over_many_answers() -> None:
    """A long session has tens of thousands of answers: what is kept per answer (first
    sends, their cycles, notes skipped as too late) covers the recent ones only."""
    from antiphon.live.scheduler import KEPT_TAGS

    clock, _out, sched = make(skip_late_notes=0.05)
    answers = 3 * KEPT_TAGS
    for tag in range(answers):
        t = clock.t
        sched.schedule(
            [
                ScheduledEvent(t, (0x90, 60, 90), tag=tag),  # due now: sent
                ScheduledEvent(t + 0.01, (0x80, 60, 0), tag=tag),
                ScheduledEvent(t + 0.02, (0x90, 62, 90), tag=tag),  # found 1 s late: skipped
                ScheduledEvent(t + 0.03, (0x80, 62, 0), tag=tag),
            ]
        )
        sched.pump(t)
        sched.pump(t + 0.011)
        clock.t = t + 1.0
        sched.pump(clock.t)
    last = answers - 1
    assert sched.first_sent(last) is not None and sched.skipped_of(last) == 1
    assert sched.first_sent(0) is None and sched.skipped_of(0) == 0  # forgotten
    kept = sum(sched.skipped_of(tag) for tag in range(answers))
    assert kept == KEPT_TAGS


def test_late_events_are_taken_once_with_the_worst() -> None:
    _, _, sched = make()
    sched.schedule([on(0.0, 60), on(0.1, 61), on(0.2, 62), on(0.3, 63)])
    sched.pump(0.001)  # within the 2 ms tolerance
    sched.pump(0.105)  # 5 ms late
    sched.pump(0.212)  # 12 ms late
    assert sched.take_late() == (2, pytest.approx(0.012))
    assert sched.take_late() == (0, 0.0)  # each late event reported once
    sched.pump(0.303)
    assert sched.take_late() == (1, pytest.approx(0.003))
    assert sched.stats()["late"] == 3  # the session's count stays whole


def test_room_is_the_time_to_the_next_event() -> None:
    _, _, sched = make()
    assert sched.room(0.0) == float("inf")
    sched.schedule([on(0.5, 60), off(0.8, 60)])
    assert sched.room(0.2) == pytest.approx(0.3)
    sched.pump(0.5)
    assert sched.room(0.6) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("asked", "backend", "server", "taken"),
    [
        (None, "jack", True, True),  # the default: as the JACK server runs
        (None, "jack", False, False),
        (None, "jack", None, False),  # no server to ask
        (None, "alsa", True, False),
        (True, "jack", False, True),  # --realtime
        (False, "jack", True, False),  # --no-realtime
    ],
)
def test_the_daemon_plays_realtime_where_its_jack_server_does(
    monkeypatch: pytest.MonkeyPatch, asked: bool | None, backend: str, server: bool | None,
    taken: bool,
) -> None:  # fmt: skip
    from types import SimpleNamespace

    from antiphon.live import daemon

    monkeypatch.setattr(daemon, "server_realtime", lambda: server)
    d = SimpleNamespace(config=SimpleNamespace(realtime=asked),
                        input=SimpleNamespace(backend=backend))  # fmt: skip
    assert daemon.Daemon._realtime(d) is taken  # type: ignore[arg-type]


def test_with_a_lead_each_event_goes_out_that_much_before_it_is_due_and_is_not_late() -> None:
    """On JACK the daemon sends 0.3 ms ahead: a first note due on a cycle's start is then
    in the ring before that cycle's callback runs, and heard at it."""
    clock, out, sched = make(lead=0.0003)
    sched.schedule(
        [ScheduledEvent(1.0, (0x90, 60, 90), tag=1), ScheduledEvent(1.1, (0x80, 60, 0), tag=1)]
    )
    assert sched.pump(0.9996) == 1.0 and out.messages() == []  # not yet: 0.4 ms ahead
    assert sched.room(0.9996) == pytest.approx(0.0001)  # it goes out in 0.1 ms
    clock.t = 0.9998
    assert sched.pump(clock.t) == 1.1
    assert out.sent == [(0.9998, [0x90, 60, 90])] and sched.first_sent(1) == 0.9998
    assert sched.late == 0  # 0.2 ms ahead of its time
    # the runner wakes a lead before each event: the note-off too
    sched.start()
    deadline = time.monotonic() + 5
    while sched.pending() and time.monotonic() < deadline:
        time.sleep(0.001)
    sched.stop(release=False)
    assert out.sent[-1] == (pytest.approx(1.0997), [0x80, 60, 0])
