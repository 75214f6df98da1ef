from __future__ import annotations

import random

import pytest

from antiphon.errors import UserError
from antiphon.live.clock import FixedClock, MidiClockFollower, parse_quantize


def tick_times(t0: float, bpm: float, n: int) -> list[float]:
    period = 60.0 / bpm / 24
    return [t0 + i * period for i in range(n)]


def play(clock: MidiClockFollower, times: list[float], jitter: float = 0.0, seed: int = 0) -> None:
    rng = random.Random(seed)
    for t in times:
        clock.on_clock(t + rng.uniform(-jitter, jitter))


@pytest.mark.parametrize(
    ("text", "beats"),
    [("1/4", 1.0), ("1/8", 0.5), ("1/8t", 1 / 3), ("1/16", 0.25), ("1/32", 0.125), ("1/4.", 1.5)],
)
def test_parse_quantize(text: str, beats: float) -> None:
    assert parse_quantize(text) == pytest.approx(beats)


def test_parse_quantize_off_and_errors() -> None:
    assert parse_quantize("off") is None
    assert parse_quantize(" OFF ") is None
    for bad in ("1/7", "quarter", "2/4", ""):
        with pytest.raises(UserError, match="quantize"):
            parse_quantize(bad)


def test_fixed_clock_conversions_and_grid() -> None:
    clock = FixedClock(120, origin=10.0)
    assert clock.tempo == 120
    assert clock.beats(1.5) == pytest.approx(3.0)
    assert clock.seconds(3.0) == pytest.approx(1.5)
    assert clock.beat_at(11.0) == pytest.approx(2.0)
    assert clock.time_of_beat(2.0) == pytest.approx(11.0)
    # 1/16 at 120 bpm is 0.125 s.
    assert clock.next_grid_time(10.01, 0.25) == pytest.approx(10.125)
    assert clock.next_grid_time(10.125, 0.25) == pytest.approx(10.125)
    assert clock.next_grid_time(10.01, None) == 10.01
    with pytest.raises(UserError):
        FixedClock(0)


def test_tempo_converges_on_a_jittery_steady_clock() -> None:
    clock = MidiClockFollower()
    assert clock.tempo is None
    # Up to 2.5 ms either way: JACK delivers once per 5.3 ms period.
    play(clock, tick_times(100.0, 120, 96), jitter=0.0025)
    assert clock.tempo == pytest.approx(120, abs=1.0)


def test_a_stalled_tick_does_not_throw_the_tempo() -> None:
    clock = MidiClockFollower()
    times = tick_times(0.0, 120, 48)
    times[40] += 0.012  # the input thread was held up
    play(clock, times[:45])
    assert clock.tempo == pytest.approx(120, abs=0.5)


def test_follows_a_tempo_change_within_two_beats() -> None:
    clock = MidiClockFollower()
    first = tick_times(0.0, 120, 96)
    play(clock, first, jitter=0.0025, seed=1)
    assert clock.tempo == pytest.approx(120, abs=1.0)
    period = 60.0 / 90 / 24
    second = [first[-1] + (i + 1) * period for i in range(48)]
    play(clock, second, jitter=0.0025, seed=2)
    assert clock.tempo == pytest.approx(90, abs=1.0)


def test_resumes_after_the_clock_went_silent() -> None:
    clock = MidiClockFollower()
    play(clock, tick_times(0.0, 120, 48))
    play(clock, tick_times(10.0, 150, 12))  # a long gap, then a new tempo
    assert clock.tempo == pytest.approx(150, abs=0.5)


def test_start_places_beat_zero_on_the_first_tick() -> None:
    clock = MidiClockFollower()
    play(clock, tick_times(0.0, 120, 24))  # clock runs while the sender is stopped
    assert not clock.running
    t0 = 0.5  # where tick 24 of a 120 bpm clock falls
    clock.on_start(t0 - 0.001)
    assert clock.running
    assert clock.beat_at(t0 - 0.0005) == 0.0
    assert clock.time_of_beat(1.0) is None  # no tick since start yet
    play(clock, tick_times(t0, 120, 25))
    assert clock.beat_at(t0) == pytest.approx(0.0, abs=1e-6)
    assert clock.beat_at(t0 + 0.5) == pytest.approx(1.0, abs=1e-6)
    # Between ticks the position is extrapolated along the fitted tempo.
    assert clock.beat_at(t0 + 0.51) == pytest.approx(1.02, abs=1e-6)
    assert clock.time_of_beat(2.0) == pytest.approx(t0 + 1.0, abs=1e-6)


def test_stop_freezes_and_continue_resumes() -> None:
    clock = MidiClockFollower()
    clock.on_start(0.0)
    times = tick_times(0.0, 120, 200)
    play(clock, times[:48])  # ticks at positions 0..47
    clock.on_stop(times[48] - 0.001)
    assert not clock.running
    assert clock.beat_at(5.0) == pytest.approx(2.0)  # where playback will resume
    assert clock.time_of_beat(3.0) is None
    assert clock.next_grid_time(5.0, 0.25) is None
    play(clock, times[48:100])  # the sender's clock keeps ticking while stopped
    assert clock.beat_at(5.0) == pytest.approx(2.0)
    assert clock.tempo == pytest.approx(120)
    clock.on_continue(times[100] - 0.001)
    play(clock, times[100:101])  # this tick plays position 48 = beat 2
    assert clock.beat_at(times[100]) == pytest.approx(2.0, abs=1e-6)
    assert clock.time_of_beat(3.0) == pytest.approx(times[124], abs=1e-6)


def test_song_position_pointer_sets_where_continue_resumes() -> None:
    clock = MidiClockFollower()
    times = tick_times(0.0, 120, 40)
    play(clock, times[:30])
    clock.feed([0xF2, 16, 0], times[30] - 0.002)  # 16 sixteenths = beat 4
    assert clock.beat_at(times[30]) == pytest.approx(4.0)
    clock.feed([0xFB], times[30] - 0.001)
    clock.feed([0xF8], times[30])
    assert clock.beat_at(times[30]) == pytest.approx(4.0, abs=1e-6)


def test_grid_times_follow_the_clock() -> None:
    clock = MidiClockFollower()
    clock.on_start(9.99)
    play(clock, tick_times(10.0, 120, 30))
    # 120 bpm: a 1/16 grid line every 0.125 s from t = 10.
    assert clock.next_grid_time(10.01, 0.25) == pytest.approx(10.125, abs=1e-6)
    assert clock.next_grid_time(10.25, 0.25) == pytest.approx(10.25, abs=1e-6)
    assert clock.next_grid_time(10.26, 1 / 3) == pytest.approx(10 + 1 / 3, abs=1e-6)
    assert clock.next_grid_time(10.3, None) == 10.3


def test_feed_routes_clock_messages_only() -> None:
    clock = MidiClockFollower()
    assert clock.feed([0xFA], 0.0)
    assert clock.running
    assert clock.feed([0xF8], 0.01)
    assert clock.feed([0xFC], 0.02)
    assert not clock.running
    assert not clock.feed([0x90, 60, 100], 0.03)
    assert not clock.feed([], 0.04)
