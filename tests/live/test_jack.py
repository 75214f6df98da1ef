"""The JACK machinery beyond rtmidi, driven by a hand-made frame counter and clock: cycles
dated as observed, the room in an output's ring, note-offs owed through a stall."""

from __future__ import annotations

import pytest

from antiphon.live import jack
from antiphon.live.ports import RtMidiInput


class Counter:
    """A JACK frame counter and clock driven by hand: cycles begin when the test says."""

    def __init__(self) -> None:
        self.t, self.frame = 0.0, 0

    def at(self, t: float, frame: int | None = None) -> None:
        self.t = t
        if frame is not None:
            self.frame = frame


def cycles_over(counter: Counter, period: float = 0.001) -> jack.JackCycles:
    return jack.JackCycles(lambda: counter.t, period, 64, lambda: counter.frame)


def seen_at(*sightings: tuple[float, int]) -> jack.JackCycles:
    """Cycles observed at these (time, frame) sightings, in order."""
    c = Counter()
    cycles = cycles_over(c)
    for t, frame in sightings:
        c.at(t, frame)
        cycles.observe()
    return cycles


def test_cycles_are_dated_when_seen_not_by_the_nominal_period() -> None:
    c = Counter()
    cycles = cycles_over(c)
    # stretched cycles (1.5 ms against a nominal 1 ms), as the dummy driver's under load
    for t, frame in [(1.0, 0), (1.0005, 0), (1.0015, 64), (1.002, 64), (1.003, 128)]:
        c.at(t, frame)
        assert cycles.observe() == frame
    assert cycles.start(1.0012) == 1.0
    assert cycles.start(1.0021) == 1.0015
    assert cycles.next_start(1.0007) == 1.0015  # not 1.0 + one nominal period
    assert cycles.first_after(0) == 1.0015
    assert cycles.first_after(128) is None  # not seen yet
    # beyond the last observation: nominal cycles from it
    assert cycles.start(1.0055) == pytest.approx(1.005)
    assert cycles.next_start(1.0055) == pytest.approx(1.006)


class Timer(Counter):
    """... with the server's word on when its driver began the cycle under way."""

    def __init__(self) -> None:
        super().__init__()
        self.began: dict[int, float] = {}

    def cycle(self, began: float, frame: int, seen: float) -> None:
        """A cycle begins at ``frame`` at ``began``; the reader sees it at ``seen``."""
        self.began[frame] = began
        self.at(seen, frame)

    def start(self, frame: int, now: object) -> float | None:
        return self.began.get(frame) if frame == self.frame else None

    def cycles(self, period: float = 0.001) -> jack.JackCycles:
        return jack.JackCycles(lambda: self.t, period, 64, lambda: self.frame, self.start)


def timed(*sightings: tuple[float, int, float]) -> tuple[Timer, jack.JackCycles]:
    """Cycles (began, frame, seen) the server dated, observed in order."""
    c = Timer()
    cycles = c.cycles()
    for began, frame, seen in sightings:
        c.cycle(began=began, frame=frame, seen=seen)
        cycles.observe()
    return c, cycles


def test_cycles_are_dated_by_the_server_not_by_when_a_late_reader_saw_them() -> None:
    c = Timer()
    cycles = c.cycles()
    c.cycle(began=1.0, frame=0, seen=1.0018)  # a starved reader: 1.8 ms late
    cycles.observe()
    c.cycle(began=1.0013, frame=64, seen=1.0031)
    cycles.observe()
    assert cycles.start(1.0005) == pytest.approx(1.0)
    assert cycles.first_after(0) == pytest.approx(1.0013)
    assert cycles.next_start(1.0005) == pytest.approx(1.0013)
    assert cycles.last_seen() == pytest.approx(1.0013)


def test_a_cycle_the_server_cannot_date_is_dated_when_it_was_seen() -> None:
    c = Timer()
    cycles = c.cycles()
    c.at(1.0, 0)  # the server began another cycle between the reads: no word on this one
    cycles.observe()
    c.cycle(began=1.0025, frame=64, seen=1.002)  # not after it was seen
    cycles.observe()
    assert cycles.start(1.0001) == 1.0
    assert cycles.start(1.0021) == 1.002


def test_a_cycle_that_ended_while_its_reader_was_held_is_not_dated_by_the_late_sighting() -> None:
    """Seen on a quiet machine: the thread that read the counter was held (another thread
    had the GIL) before it read the clock and the server's timer; meanwhile the next cycle
    began, so the server no longer said when the one read began, and the late sighting
    dated it 1.3 ms late. A first note sent 0.24 ms before that cycle was then dated a cycle
    after the listener heard it. Now the cycle under way is read instead, and the one
    skipped is placed between its neighbours."""
    c = Timer()
    cycles = c.cycles(period=0.001)
    c.cycle(began=1.0, frame=0, seen=1.00001)
    cycles.observe()
    reads = iter([64, 128])  # read at 1.0011 in cycle 64; the clock next read at 1.00215

    def read_frame() -> int:
        frame = next(reads, 128)
        if frame == 128:
            c.cycle(began=1.002, frame=128, seen=1.00215)
        return frame

    cycles._read_frame = read_frame
    assert cycles.observe() == 128
    assert cycles.began(128) == pytest.approx(1.002)
    assert cycles.began(64) is None  # never dated by a late sighting
    assert cycles.first_after(0) == pytest.approx(1.001)  # placed between its neighbours
    assert cycles.heard(1.0005, 0, before=0, returned=1.00051) == (pytest.approx(1.001), 0)


def test_cycles_slept_through_are_spread_between_the_observations_around_them() -> None:
    c = Counter()
    cycles = cycles_over(c)
    c.at(2.0, 1000 * 64)
    cycles.observe()
    c.at(2.004, 1004 * 64)  # the reader slept through three cycles
    cycles.observe()
    assert cycles.start(2.0015) == pytest.approx(2.001)
    assert cycles.next_start(2.0015) == pytest.approx(2.002)
    assert cycles.next_start(2.0035) == pytest.approx(2.004)
    assert cycles.first_after(1000 * 64) == pytest.approx(2.001)


def test_cycles_survive_the_frame_counter_wrapping() -> None:
    c = Counter()
    cycles = cycles_over(c)
    c.at(5.0, (1 << 32) - 64)
    cycles.observe()
    c.at(5.002, 64)  # two cycles on, past the wrap
    cycles.observe()
    assert cycles.first_after((1 << 32) - 64) == pytest.approx(5.001)
    assert cycles.start(5.0015) == pytest.approx(5.001)


def test_a_cycle_read_before_a_later_one_was_recorded_is_not_recorded_after_it() -> None:
    """Two threads observe: one reads cycle 64 and is held before recording it while the
    other records cycle 128. Appended after 128, cycle 64 took 128's start (kept in order),
    and a send in it was dated before it was sent."""
    c, cycles = timed((1.0, 0, 1.00001), (1.002, 128, 1.00201))
    c.cycle(began=1.001, frame=64, seen=1.0021)  # the held thread's read, recorded late
    assert cycles.observe() == 64
    assert cycles.began(64) is None  # not recorded: placed between its neighbours
    assert cycles.first_after(0) == pytest.approx(1.001)
    assert cycles.began(128) == pytest.approx(1.002)


def test_a_cycle_the_server_dates_before_the_one_before_it_is_dated_by_its_sighting() -> None:
    """Cycle 0 could only be dated when seen (late); the server dates cycle 64 earlier
    than that. Kept in order by taking cycle 0's date, it had no length: what it carried
    was dated before it was sent. Its own sighting bounds it instead."""
    c = Timer()
    cycles = c.cycles()
    c.at(1.005, 0)  # no word from the server: dated when seen
    cycles.observe()
    c.cycle(began=1.0013, frame=64, seen=1.130)  # after a stall of the server
    cycles.observe()
    assert cycles.began(64) == pytest.approx(1.130)
    t, err = cycles.heard(1.0073, 0, before=0, returned=1.00731)
    assert t - err >= 1.0073 and t == pytest.approx(1.130)


def test_nothing_is_heard_before_it_was_sent() -> None:
    """Reads that contradict the send (a counter read long before it): only what is sure,
    after the send and by the first cycle seen to begin after it, with that as the error."""
    cycles = seen_at(*((1.0 + k * 0.001, 64 * k) for k in range(600)))
    t, err = cycles.heard(1.5003, 0, before=0, returned=1.5004)
    assert t - err == pytest.approx(1.5003) and t + err == pytest.approx(1.501)


def test_cycles_far_back_are_found_until_trimmed_across_the_wrap() -> None:
    """A reader draining a flood asks, for every message, about the cycle of its last
    empty poll, thousands of observations back: found by where it is kept (a walk back
    to it made a drain that fell behind slower than the flood came). Trimmed ones, and
    frames no cycle began at, are not found."""
    c = Counter()
    cycles = cycles_over(c)
    first = (1 << 32) - 64 * 100  # the counter wraps a hundred cycles in
    n = 2 * jack.JackCycles.KEEP + 50  # one trim, at 2 * KEEP + 1
    for k in range(n):
        c.at(10.0 + k * 0.001, (first + 64 * k) % (1 << 32))
        cycles.observe()
    kept = n - jack.JackCycles.KEEP
    assert cycles.began(first) is None  # trimmed
    assert cycles.began((first + 64 * (jack.JackCycles.KEEP - 1)) % (1 << 32)) is None
    oldest = (first + 64 * jack.JackCycles.KEEP) % (1 << 32)
    assert cycles.began(oldest) == pytest.approx(10.0 + jack.JackCycles.KEEP * 0.001)
    assert cycles.first_after(oldest) == pytest.approx(10.001 + jack.JackCycles.KEEP * 0.001)
    newest = (first + 64 * (n - 1)) % (1 << 32)
    assert cycles.began(newest) == pytest.approx(10.0 + (n - 1) * 0.001)
    assert cycles.first_after(newest) is None  # not seen yet
    assert cycles.began((newest + 32) % (1 << 32)) is None  # no cycle began there
    assert kept == len(cycles._starts)


def test_a_message_is_dated_by_the_cycle_that_brought_it() -> None:
    cycles = seen_at((1.0, 0), (1.0012, 64))
    # Not there at the empty poll in cycle 0, found in cycle 64: it came with cycle 64,
    # even where the backend's delta (from a message long before) puts it earlier.
    # (The earliest it can have come in: that same cycle, the first after the empty poll.)
    assert RtMidiInput._cycle_of(cycles, 1.0004, 64, 0) == (1.0012, 1.0012)
    # The counter had not moved since the empty poll: the cycle then under way, even where
    # the deltas from a message long before put it a cycle earlier.
    assert RtMidiInput._cycle_of(cycles, 1.0014, 64, 64) == (1.0012, 1.0012)
    assert RtMidiInput._cycle_of(cycles, 1.0008, 64, 64) == (1.0012, 1.0012)
    # A reader that woke 3 ms into cycle 64 (a starved one) dates the message by its poll;
    # it came no later than cycle 64, not in cycles the nominal period would put after it.
    assert RtMidiInput._cycle_of(cycles, 1.0042, 64, 0) == (1.0012, 1.0012)


def test_a_poll_at_a_cycles_start_does_not_rule_that_cycle_out() -> None:
    """Our client's callback hands a cycle's messages over some way into the cycle: a poll
    that found nothing 50 us into cycle 0 may have come before it. A message found in cycle
    64 may then have come in cycle 0; the estimate decides, by the middle between the two
    callbacks' windows (forced to cycle 64, the bench's ear dated answers a cycle late and
    said it was sure)."""
    cycles = seen_at((1.0, 0), (1.0012, 64))
    assert RtMidiInput._cycle_of(cycles, 1.0001, 64, 0, empty_at=1.00005) == (1.0, 1.0)
    assert RtMidiInput._cycle_of(cycles, 1.0005, 64, 0, empty_at=1.00005) == (1.0, 1.0)
    # estimated past the middle (1.000675): cycle 64, and cycle 0 was possible
    assert RtMidiInput._cycle_of(cycles, 1.0008, 64, 0, empty_at=1.00005) == (1.0012, 1.0)
    # a poll well into cycle 0 rules it out, whatever the estimate
    assert RtMidiInput._cycle_of(cycles, 1.0001, 64, 0, empty_at=1.0003) == (1.0012, 1.0012)


def test_a_reader_that_slept_through_cycles_says_how_early_a_message_can_have_come() -> None:
    """Empty at a poll in cycle 0, found in cycle 128: it came in cycle 64 or 128. The
    backend's delta (from a message long before) picks one; the bound keeps the other."""
    cycles = seen_at((1.0, 0), (1.0026, 128))
    t, earliest = RtMidiInput._cycle_of(cycles, 1.0030, 128, 0)
    assert t == pytest.approx(1.0026) and earliest == pytest.approx(1.0013)
    t, earliest = RtMidiInput._cycle_of(cycles, 1.0014, 128, 0)
    assert t == pytest.approx(1.0013) and earliest == pytest.approx(1.0013)


def test_a_send_is_heard_at_the_cycle_whose_callback_came_after_it() -> None:
    """``heard``: a cycle carries what was in the sending client's ring when that client's
    callback ran, some way into the cycle (measured: 12 to 95 us after its estimated start).
    Where the send is clearly before or after that, the figure is exact; where it could be
    either, it is the middle of the two cycles, off by at most half a period."""
    c = Timer()
    cycles = c.cycles()
    c.cycle(began=1.0, frame=0, seen=1.00001)
    cycles.observe()
    # sent at +0.088 ms, returned at +0.1; the next cycle came early, at +0.22 ms, and the
    # read after the send (the thread preempted) only at +0.3 ms: the new cycle carried it
    # (seen: the listener 0.22 ms, --stats 1.82)
    c.cycle(began=1.00022, frame=64, seen=1.0003)
    assert cycles.observe() == 64
    t, err = cycles.heard(1.000088, 64, before=0, returned=1.0001)
    assert (t, err) == (pytest.approx(1.00022), 0.0)
    # a send 0.3 ms into its cycle (read before and after in it): the next one, once seen
    t, err = cycles.heard(1.00052, 64, before=64, returned=1.00053)
    assert (t, err) == (pytest.approx(1.00122), 0.0)  # a period on, until seen
    c.cycle(began=1.0016, frame=128, seen=1.00161)
    cycles.observe()
    assert cycles.heard(1.00052, 64, before=64, returned=1.00053) == (pytest.approx(1.0016), 0)
    # 40 us into its cycle: its callback may or may not have run; either cycle, said so
    t, err = cycles.heard(1.00026, 64, before=64, returned=1.00027)
    assert t == pytest.approx((1.00022 + 1.0016) / 2) and err == pytest.approx(0.00069)
    # a cycle that began between the reads, after a send that returned only 10 us before
    # its estimated start: its callback may have come first
    t, err = cycles.heard(1.0002, 64, before=0, returned=1.00021)
    assert t == pytest.approx((1.00022 + 1.0016) / 2) and err > 0
    # without a counter read (an unobserved cycle): the estimate alone
    assert cycles.heard(1.00005, None) == (pytest.approx(1.00022), 0.0)


def test_a_cycle_under_way_before_the_send_did_not_carry_it_whatever_its_estimate() -> None:
    """Seen twice in a loaded run: a first note sent 0.03 ms before its cycle's estimated
    start, heard a cycle later by the listener. The counter read before the send already
    showed that cycle: it had begun (its estimate was late), and its callback may have run."""
    c = Timer()
    cycles = c.cycles()
    c.cycle(began=1.0, frame=0, seen=1.00001)
    cycles.observe()
    c.cycle(began=1.00137, frame=64, seen=1.0014)  # truly at 1.00129: estimated 80 us late
    cycles.observe()
    c.cycle(began=1.0027, frame=128, seen=1.00271)
    cycles.observe()
    t, err = cycles.heard(1.00134, 64, before=64, returned=1.00135)
    assert t == pytest.approx((1.00137 + 1.0027) / 2) and err > 0  # never the cycle alone


def test_a_send_is_dated_by_its_cycle_however_long_ago_it_was_observed() -> None:
    """The --stats row is written an answer after the first note: seen in a loaded run,
    a cycle 100 observations back was "not observed", and the answer dated a cycle late."""
    c = Timer()
    cycles = c.cycles()
    c.cycle(began=1.0, frame=0, seen=1.00001)
    cycles.observe()
    c.cycle(began=1.00134, frame=64, seen=1.0014)  # began after the send, before its read
    cycles.observe()
    for k in range(2, 200):
        c.cycle(began=1.0 + k * 0.00134, frame=64 * k, seen=1.00001 + k * 0.00134)
        cycles.observe()
    assert cycles.began(64) == pytest.approx(1.00134)
    assert cycles.heard(1.0001, 64, before=0, returned=1.00011) == (pytest.approx(1.00134), 0)
    assert cycles.began(32) is None  # no cycle began there: not one of them
    assert cycles.began(64 * 500) is None  # not yet


def test_a_read_after_the_send_cycles_later_does_not_date_it_by_that_cycle() -> None:
    """The thread that sent was preempted between the send and the counter read after it:
    the read shows a cycle two on. What was in the ring in time went with the first cycle
    after the read before the send, not with the one the late read saw."""
    c = Timer()
    cycles = c.cycles()
    for k in range(3):  # observed by another thread meanwhile
        c.cycle(began=1.0 + k * 0.001, frame=64 * k, seen=1.00001 + k * 0.001)
        cycles.observe()
    assert cycles.heard(1.0005, 128, before=0, returned=1.00051) == (pytest.approx(1.001), 0)
    # returned too close to that cycle's start to know: that one or the next, said so
    t, err = cycles.heard(1.00097, 128, before=0, returned=1.00099)
    assert t == pytest.approx(1.0015) and err == pytest.approx(0.0005)
    # the cycle skipped between the reads came after a stall, anywhere up to the next one
    # seen: never that next one alone
    _, cycles = timed((1.0, 0, 1.00001), (1.0035, 128, 1.00351))
    t, err = cycles.heard(1.0005, 128, before=0, returned=1.00051)
    assert t == pytest.approx((1.00051 + 1.0035) / 2) and err == pytest.approx(0.0014950)


class PreemptedLib:
    """libjack's three reads for ``_Reader.cycle_start``, over a fake clock: a cycle began
    at 1.0 s, and the thread is preempted for ``stalls[i]`` seconds right after its i-th
    read of the frames since the cycle began."""

    RATE = 48_000

    def __init__(self, now: float, stalls: list[float]) -> None:
        self.t, self.stalls = now, stalls

    def jack_get_sample_rate(self, client: object) -> int:
        return self.RATE

    def jack_last_frame_time(self, client: object) -> int:
        return 4096

    def jack_frames_since_cycle_start(self, client: object) -> int:
        since = int((self.t - 1.0) * self.RATE)
        self.t += self.stalls.pop(0) if self.stalls else 2e-6
        return since


def test_a_reader_preempted_while_reading_the_servers_timer_reads_it_again() -> None:
    """Traced in a loaded run: read ``since``, preempted 0.15 ms, then the clock: the
    daemon dated the cycle 0.15 ms late and put its first note a cycle early."""
    lib = PreemptedLib(1.0003, [0.00015, 0.00015])
    reader = jack._Reader(lib, client=1)
    began = reader.cycle_start(4096, lambda: lib.t)
    assert began is not None and abs(began - 1.0) <= 1 / lib.RATE + 2e-6
    assert reader.cycle_start(4160, lambda: lib.t) is None  # not the cycle under way
    # preempted at every read: the middle of the last bracket, half a stall off at most
    always = PreemptedLib(1.0003, [0.00015] * jack.SINCE_READS)
    began = jack._Reader(always, client=1).cycle_start(4096, lambda: always.t)
    assert began is not None and abs(began - 1.0) <= 0.000075 + 1 / lib.RATE


def room_over(counter: Counter, patience: float = 0.5) -> jack.JackRoom:
    def wait(seconds: float) -> None:
        counter.t += seconds

    return jack.JackRoom(
        lambda: counter.frame, period=0.001, patience=patience, now=lambda: counter.t, wait=wait
    )


def test_sends_while_the_server_runs_cycles_are_never_refused() -> None:
    c = Counter()
    room = room_over(c)
    for i in range(20_000):  # a flood: 20,000 note messages over 200 cycles
        if i % 100 == 0:
            c.at(c.t + 0.001, c.frame + 64)
        assert room.take(3)
    assert room.refused == 0


def test_a_server_that_runs_no_cycles_gets_no_more_than_its_ring_holds() -> None:
    c = Counter()
    room = room_over(c, patience=0.5)
    taken = 0
    while room.take(3):
        taken += 1
        assert taken < 10_000, "sends were never refused: rtmidi's ring would be full"
    # Refused after the patience, with at most a third of rtmidi's 16 KB ring written.
    assert (3 + jack.JackRoom.HEADER) * taken <= jack.JackRoom.RING // 3
    assert c.t == pytest.approx(0.5, abs=0.001)
    # Until a cycle begins, later sends are refused at once (a release of every note on
    # the way out does not wait half a second per message).
    before = c.t
    assert not room.take(3) and c.t == before
    assert room.refused == 2
    c.at(c.t + 0.001, 64)  # the server runs again
    assert room.take(3) and not room.stalled


def test_a_send_past_the_cycles_room_waits_for_the_next_cycle() -> None:
    c = Counter()
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        c.at(c.t + seconds, c.frame + (64 if len(waits) == 3 else 0))  # a cycle, 3 polls on

    room = jack.JackRoom(lambda: c.frame, period=0.001, patience=0.5, now=lambda: c.t, wait=wait)
    n = (jack.JackRoom.RING // 3) // (3 + jack.JackRoom.HEADER)
    assert all(room.take(3) for _ in range(n)) and not waits
    assert room.take(3) and len(waits) == 3 and room.refused == 0


def stalled_metered(c: Counter) -> tuple[jack.Metered, list[list[int]]]:
    """A metered output whose server stopped running cycles with notes 60 and 62 down."""
    sent: list[list[int]] = []
    out = jack.Metered(room_over(c, patience=0.5), sent.append)
    out.send([0x90, 60, 100])
    out.send([0x91, 62, 100])
    while out.room.take(3):  # the rest of the stalled cycle's room goes to other traffic
        pass
    return out, sent


def test_note_offs_refused_by_a_stalled_server_are_sent_when_it_runs_again() -> None:
    c = Counter()
    out, sent = stalled_metered(c)
    out.send([0x80, 60, 0])
    out.send([0x91, 62, 0])  # a note-on at velocity 0 is a note-off too
    out.send([0x90, 64, 100])  # a note-on refused is dropped: it never sounded
    assert sent == [[0x90, 60, 100], [0x91, 62, 100]]
    out.settle()  # no cycle yet: nothing sent, nothing waited for
    assert len(sent) == 2 and c.t == pytest.approx(0.5, abs=0.001)
    c.at(c.t + 0.001, c.frame + 64)  # the server runs again, and nothing else is sent
    out.settle()
    assert sent[2:] == [[0x80, 60, 0], [0x81, 62, 0]] and not out.owed


def test_owed_note_offs_go_out_before_the_next_message() -> None:
    c = Counter()
    out, sent = stalled_metered(c)
    out.send([0x80, 60, 0])
    c.at(c.t + 0.001, c.frame + 64)
    out.send([0x90, 67, 90])
    assert sent[2:] == [[0x80, 60, 0], [0x90, 67, 90]] and not out.owed


def test_after_a_stall_the_next_cycle_is_anywhere_up_to_the_next_one_seen() -> None:
    """Seen under load: the server ran no cycle for several milliseconds, then ran the ones
    it owed back to back. A send during the stall is carried by the first of them; placed
    evenly between the cycles seen, it was dated 2.6-9.8 ms before the listener heard it."""
    c = Timer()
    cycles = c.cycles(period=0.001)
    c.cycle(began=1.0, frame=0, seen=1.00001)
    cycles.observe()
    c.cycle(began=1.010, frame=256, seen=1.01001)  # 4 cycles in 10 ms: a stall, a burst
    cycles.observe()
    t, err = cycles.heard(1.004, 0, before=0, returned=1.00401)
    assert t == pytest.approx((1.00401 + 1.010) / 2) and err == pytest.approx(0.002995)
    # cycles that kept their period while the reader slept through them: exact
    c.cycle(began=1.014, frame=512, seen=1.01401)
    cycles.observe()
    assert cycles.heard(1.0104, 256, before=256, returned=1.01041) == (pytest.approx(1.011), 0)


def test_a_release_the_bench_needs_dated_waits_until_it_is_clear_of_a_cycles_edge() -> None:
    """``harness.clear_of_edge``: the bench's player sends a phrase's release where
    ``heard`` dates it to one cycle, so the bench's phrase end is known from the send. It
    waits past the edge after a cycle's start and out of the last stretch before the next
    one, a quarter period at most, and then the send is exact."""
    from antiphon.live.harness import clear_of_edge

    c = Timer()
    cycles = c.cycles(period=0.001)
    c.cycle(began=1.0, frame=0, seen=1.00001)

    def pause() -> None:  # 10 us pass; the server begins a cycle every millisecond
        t = c.t + 1e-5
        k = round((t - 1.0) // 0.001)
        if 64 * k != c.frame:
            c.cycle(began=1.0 + k * 0.001, frame=64 * k, seen=t)
        else:
            c.at(t)

    def clear_from(t: float) -> tuple[int | None, float]:
        pause_to = t - 1e-5
        while c.t < pause_to:
            pause()
        start = c.t
        frame = clear_of_edge(cycles, lambda: c.t, pause)
        return frame, c.t - start

    # mid-cycle: at once, and the send is dated to one cycle
    frame, waited = clear_from(1.0005)
    assert waited == 0 and frame == 0
    assert cycles.heard(c.t, 0, before=frame, returned=c.t + 1e-5)[1] == 0
    # 50 us after a cycle began: its callback may not have run yet; waits past the edge
    frame, waited = clear_from(1.00105)
    assert frame == 64 and 0 < waited <= 0.00025
    assert c.t - 1.001 >= jack.JackCycles.EDGE
    # 50 us before the next cycle: into that one, past its edge
    frame, waited = clear_from(1.00295)
    assert frame == 192 and c.t - 1.003 >= jack.JackCycles.EDGE and waited <= 0.00025
    # the server stalls (no cycle begins): a quarter period, then it sends anyway
    c.cycle(began=1.004, frame=256, seen=1.00495)  # seen late in its cycle: none after
    frame = clear_of_edge(cycles, lambda: c.t, lambda: c.at(c.t + 1e-5))
    assert frame == 256 and c.t == pytest.approx(1.00495 + 0.00025, abs=2e-5)
