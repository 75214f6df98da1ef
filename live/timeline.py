"""Musical time for the daemon: beats from a fixed tempo or from incoming MIDI clock.

The context needs beats that never go backwards, also while a MIDI clock is stopped or not
yet locked; responses need the wall time of a beat. With ``--clock`` the follower's song
position drives both once it runs and knows its tempo; otherwise (and while it is stopped)
beats run freely at the last known tempo, continuing from where they were.
"""

from __future__ import annotations

import threading

from antiphon.live.clock import FixedClock, MidiClockFollower


class Timeline:
    def __init__(
        self, bpm: float, origin: float, follower: MidiClockFollower | None = None
    ) -> None:
        self.fixed = FixedClock(bpm, origin)
        self.follower = follower
        self._lock = threading.Lock()
        self._last = 0.0  # last beat handed out (monotonic)
        self._offset: float | None = None  # context beat - song position while following

    @property
    def following(self) -> bool:
        f = self.follower
        return f is not None and f.running and f.tempo is not None

    @property
    def tempo(self) -> float:
        if self.follower is not None and self.follower.tempo is not None:
            return self.follower.tempo
        return self.fixed.tempo

    def beat_at(self, t: float) -> float:
        with self._lock:
            if self.following:
                assert self.follower is not None
                song = self.follower.beat_at(t)
                if self._offset is None:  # the clock just locked: continue from here
                    self._offset = self._free(t) - song
                beat = song + self._offset
            else:
                if self._offset is not None:  # the clock stopped: run freely from here
                    self.fixed = FixedClock(self.tempo, t - self.fixed.seconds(self._last))
                    self._offset = None
                beat = self._free(t)
            self._last = max(self._last, beat)
            return self._last

    def beat_of(self, t: float) -> float:
        """The beat at ``t`` (past or future) without moving the monotonic cursor."""
        with self._lock:
            if self.following and self._offset is not None:
                assert self.follower is not None
                return self.follower.beat_at(t) + self._offset
            return self.fixed.beat_at(t)

    def set_tempo(self, bpm: float, t: float) -> None:
        """A new fixed tempo from ``t`` on, the beats continuing from where they are (a
        running MIDI clock still leads while it runs)."""
        with self._lock:
            beat = self.fixed.beat_at(t)
            self.fixed = FixedClock(bpm, t - beat * 60.0 / bpm)

    def _free(self, t: float) -> float:
        if self.fixed.tempo != self.tempo:  # follow a tempo estimate without jumping
            beat = self.fixed.beat_at(t)
            self.fixed = FixedClock(self.tempo, t - beat * 60.0 / self.tempo)
        return self.fixed.beat_at(t)

    def time_of_beat(self, beat: float) -> float:
        with self._lock:
            if self.following and self._offset is not None:
                assert self.follower is not None
                when = self.follower.time_of_beat(beat - self._offset)
                if when is not None:
                    return when
            return self.fixed.time_of_beat(beat)

    def next_grid_time(self, t: float, quantize: float | None) -> float:
        """The first grid line at or after ``t`` (only with a running clock: free time has
        no downbeat to agree with)."""
        if not quantize or not self.following:
            return t
        assert self.follower is not None
        when = self.follower.next_grid_time(t, quantize)
        return t if when is None else when
