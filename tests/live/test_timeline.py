from __future__ import annotations

from antiphon.live.clock import MidiClockFollower
from antiphon.live.timeline import Timeline


def test_fixed_tempo_beats_and_times() -> None:
    tl = Timeline(120, origin=100.0)
    assert tl.beat_at(101.0) == 2.0
    assert tl.time_of_beat(4.0) == 102.0
    assert tl.beat_of(103.0) == 6.0
    assert tl.beat_at(100.5) == 2.0  # never backwards
    assert tl.next_grid_time(101.01, 0.25) == 101.01  # no clock, no grid


def test_following_a_clock_continues_the_beats_and_places_the_grid() -> None:
    f = MidiClockFollower()
    tl = Timeline(120, origin=0.0, follower=f)
    assert tl.beat_at(1.0) == 2.0  # free running before the clock
    period = 60 / 90 / 24  # 90 bpm
    f.on_start(2.0)
    t = 2.0
    for _ in range(48):
        f.on_clock(t)
        t += period
    assert tl.following and abs(tl.tempo - 90) < 0.01
    b = tl.beat_at(t)
    assert b >= 2.0  # continues from the free-running beats
    later = tl.beat_at(t + 60 / 90)
    assert abs(later - b - 1.0) < 1e-6  # a beat at 90 bpm
    grid = tl.next_grid_time(t + 0.01, 0.25)
    # the grid line is a whole number of sixteenths after the clock's start
    sixteenths = (grid - 2.0) / (60 / 90 / 4)
    assert abs(sixteenths - round(sixteenths)) < 1e-6 and grid >= t + 0.01
    f.on_stop(t + 1.0)
    assert not tl.following
    assert tl.beat_at(t + 2.0) >= later  # free again, still monotonic
