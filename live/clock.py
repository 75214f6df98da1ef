"""Musical time: beats from a fixed BPM or from incoming MIDI clock.

Both clocks answer the same questions on the daemon's ``now`` timeline (seconds):
``tempo``, ``running``, ``beat_at(t)``, ``time_of_beat(beat)`` and
``next_grid_time(t, quantize)``. Beats are quarter notes. Nothing here reads a clock:
every time comes in as an argument.

The MIDI clock follower fits a line ``time = a + period * tick`` by least squares over the
last ``window`` ticks (24 = one beat by default) and drops ticks whose residual is far
outside the rest before refitting once. Arrival times jitter by up to a JACK period
(~5 ms) and by the GIL; the fit averages that out (a 24-tick window at 120 bpm with ±2.5 ms
of jitter gives the tempo to about 0.2 %) while a tempo change has left the window, and so
been followed, one beat after it happens.
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque

from antiphon.errors import UserError

TICKS_PER_QUARTER = 24
CLOCK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2

_QUANTIZE = re.compile(r"1/(1|2|4|8|16|32|64)(t|\.)?")


def parse_quantize(text: str) -> float | None:
    """A grid in quarter notes: "1/16" -> 0.25, "1/8t" -> 1/3 (triplet), "1/8." -> 0.75
    (dotted); "off" -> None."""
    s = text.strip().lower()
    if s in ("off", "none", "0"):
        return None
    m = _QUANTIZE.fullmatch(s)
    if m is None:
        raise UserError(
            f"invalid quantize {text!r}: use off, 1/4, 1/8, 1/8t (triplet), 1/16 or 1/32"
        )
    value = 4.0 / int(m.group(1))
    if m.group(2) == "t":
        return value * 2.0 / 3.0
    if m.group(2) == ".":
        return value * 1.5
    return value


def _grid_beat(beat: float, quantize: float) -> float:
    # The tolerance keeps a time that is on the grid (up to rounding) on it.
    return math.ceil(beat / quantize - 1e-9) * quantize


class FixedClock:
    """A steady tempo; beat 0 is at ``origin`` on the daemon's clock."""

    running = True

    def __init__(self, bpm: float, origin: float = 0.0) -> None:
        if not bpm > 0:
            raise UserError(f"tempo must be positive, got {bpm} bpm")
        self.tempo = float(bpm)
        self.origin = origin

    def beats(self, dt_seconds: float) -> float:
        return dt_seconds * self.tempo / 60.0

    def seconds(self, beats: float) -> float:
        return beats * 60.0 / self.tempo

    def beat_at(self, t: float) -> float:
        return self.beats(t - self.origin)

    def time_of_beat(self, beat: float) -> float:
        return self.origin + self.seconds(beat)

    def next_grid_time(self, t: float, quantize: float | None) -> float:
        if not quantize:
            return t
        return max(t, self.time_of_beat(_grid_beat(self.beat_at(t), quantize)))


class MidiClockFollower:
    """Tempo and song position from MIDI clock (24 ticks per quarter), start, stop,
    continue and song position pointer, fed with their arrival times. Thread-safe: the
    input thread feeds it while others ask."""

    def __init__(self, window: int = TICKS_PER_QUARTER, min_ticks: int = 6) -> None:
        if window < 3 or not 2 <= min_ticks <= window:
            raise ValueError("need window >= 3 and 2 <= min_ticks <= window")
        self.window = window
        self.min_ticks = min_ticks
        self._lock = threading.Lock()
        self._ticks: deque[tuple[int, float]] = deque(maxlen=window)  # (raw index, time)
        self._raw = -1  # every tick counts here, running or not, for the tempo fit
        self._fit: tuple[float, float, float] | None = None  # (mean tick, mean time, period)
        self.running = False
        self._next_pos = 0  # song position (ticks) the next running tick plays
        self._offset: int | None = None  # raw index - song position while running
        self.last_tick: float | None = None

    def feed(self, data: list[int], t: float) -> bool:
        """Route one raw message; True if it was a clock message."""
        status = data[0] if data else 0
        if status == CLOCK:
            self.on_clock(t)
        elif status == START:
            self.on_start(t)
        elif status == CONTINUE:
            self.on_continue(t)
        elif status == STOP:
            self.on_stop(t)
        elif status == SONG_POSITION and len(data) == 3:
            self.on_song_position(data[1] | data[2] << 7)
        else:
            return False
        return True

    def on_clock(self, t: float) -> None:
        with self._lock:
            if self.last_tick is not None:
                gap = t - self.last_tick
                period = self._fit[2] if self._fit else None
                # A long silence means the sender stopped its clock: old ticks would
                # bend the fit, so it starts again from this one.
                if gap > (4 * period if period else 1.0):
                    self._ticks.clear()
            self._raw += 1
            self.last_tick = t
            self._ticks.append((self._raw, t))
            self._fit = self._solve()
            if self.running:
                self._offset = self._raw - self._next_pos
                self._next_pos += 1

    def on_start(self, t: float) -> None:
        # The first clock after Start plays song position 0.
        with self._lock:
            self.running = True
            self._next_pos = 0
            self._offset = None

    def on_continue(self, t: float) -> None:
        with self._lock:
            self.running = True
            self._offset = None

    def on_stop(self, t: float) -> None:
        with self._lock:
            self.running = False
            self._offset = None

    def on_song_position(self, sixteenths: int) -> None:
        with self._lock:
            self._next_pos = sixteenths * TICKS_PER_QUARTER // 4
            self._offset = None

    @property
    def tempo(self) -> float | None:
        """Beats per minute, None until ``min_ticks`` ticks have been seen."""
        fit = self._fit
        return None if fit is None else 60.0 / (fit[2] * TICKS_PER_QUARTER)

    def beat_at(self, t: float) -> float:
        """Song position in quarter notes at ``t``: between ticks from the fitted line;
        frozen (where playback resumes) while stopped or before the first tick."""
        with self._lock:
            if self._fit is None or self._offset is None:
                return self._next_pos / TICKS_PER_QUARTER
            mean_tick, mean_time, period = self._fit
            raw = mean_tick + (t - mean_time) / period
            return (raw - self._offset) / TICKS_PER_QUARTER

    def time_of_beat(self, beat: float) -> float | None:
        """When song position ``beat`` plays; None when stopped or tempo unknown."""
        with self._lock:
            if self._fit is None or self._offset is None:
                return None
            mean_tick, mean_time, period = self._fit
            raw = beat * TICKS_PER_QUARTER + self._offset
            return mean_time + (raw - mean_tick) * period

    def next_grid_time(self, t: float, quantize: float | None) -> float | None:
        """The time of the first grid line at or after ``t``; ``t`` itself without a
        grid; None when the clock cannot place the grid (stopped, tempo unknown)."""
        if not quantize:
            return t
        when = self.time_of_beat(_grid_beat(self.beat_at(t), quantize))
        return None if when is None else max(t, when)

    def _solve(self) -> tuple[float, float, float] | None:
        points = list(self._ticks)
        if len(points) < self.min_ticks:
            return None
        fit = _least_squares(points)
        if fit is None:
            return None
        residuals = [abs(y - (fit[1] + (x - fit[0]) * fit[2])) for x, y in points]
        spread = sorted(residuals)[len(residuals) // 2]
        # A tick delayed far beyond the typical jitter (a stalled thread) is dropped;
        # the floor keeps a perfectly steady clock from rejecting rounding noise.
        limit = max(4.0 * spread, 0.05 * fit[2])
        kept = [p for p, r in zip(points, residuals, strict=True) if r <= limit]
        if len(kept) == len(points) or len(kept) < self.min_ticks:
            return fit
        return _least_squares(kept) or fit


def _least_squares(points: list[tuple[int, float]]) -> tuple[float, float, float] | None:
    """(mean x, mean y, slope) of y on x, centred so large times keep their precision."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    if sxx == 0 or sxy <= 0:
        return None
    return mx, my, sxy / sxx
