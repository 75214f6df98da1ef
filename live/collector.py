"""Python's cyclic garbage collector, kept off the note scheduler's back.

A full (generation 2) collection walks every object the collector tracks with the GIL held,
so every thread waits for it, the note scheduler too, and a note due meanwhile goes out
late. In the daemon with its model loaded that walk was measured at 2-10 ms (one at exit:
9.7 ms), more than the scheduler's 2 ms lateness tolerance; left to Python, 14 came at
moments of its choosing in a 30-minute soak, the longest 2.9 ms even with what was alive at
start frozen out of them (``antiphon bench --live --soak 30``).

So the daemon decides when:

- What is alive once the daemon has started (modules, the model's session and tables, the
  ports) lives as long as the daemon: ``gc.freeze`` moves it out of every later collection.
- Python never starts a full collection by itself (its third threshold out of reach); the
  young generations, which walk only new objects (microseconds), still run as they would.
- The daemon's watch loop calls ``maybe_collect`` with the room it has: the time before
  anything could be due (the next scheduled note, or an answer whose phrase is ending). A
  full collection runs every ``every`` seconds where there is ``MIN_ROOM`` at least, and
  regardless once ``overdue`` has passed, so cyclic garbage is still freed however busy the
  session.
- The pauses are timed (``gc.callbacks``), and ``--stats`` reports the longest beside the
  late events, so a late note that coincides with one can be told from one that does not.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable

KEPT = 1024  # pauses remembered between two ``take`` calls (nobody taking: no growth)
EVERY = 30.0  # seconds between full collections, where there is room
OVERDUE = 300.0  # seconds after which one runs wherever the watch loop is
MIN_ROOM = 0.05  # seconds before anything is due that a collection (2-10 ms) needs
NEVER = 2**31 - 1  # a threshold Python's count of collections never reaches


class Collector:
    """Freezes what is alive at ``install``, runs the full collections when told there is
    room, and times them."""

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        every: float = EVERY,
        overdue: float = OVERDUE,
    ) -> None:
        self._clock = clock
        self.every, self.overdue = every, overdue
        self._began: float | None = None
        # No lock: the callback runs inside a collection, which any allocation can start,
        # in a thread that may already hold one. deque.append and popleft are atomic.
        self._pauses: deque[float] = deque(maxlen=KEPT)
        self.frozen = 0  # objects moved out of every later collection
        self._thresholds: tuple[int, int, int] | None = None
        self._last: float | None = None  # when the last full collection ran (caller's clock)
        self.collections = 0

    def install(self, now: float | None = None) -> None:
        gc.collect()  # what start-up left as garbage goes now, not frozen forever
        gc.freeze()
        self.frozen = gc.get_freeze_count()
        self._last = now
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
            young, middle, _ = self._thresholds
            gc.set_threshold(young, middle, NEVER)
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._thresholds is not None:
            gc.callbacks.remove(self._callback)
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def maybe_collect(self, now: float, room: float) -> bool:
        """A full collection if one is due and ``room`` seconds pass before anything is
        (or one is overdue); True if it ran."""
        if self._last is None:
            self._last = now
        since = now - self._last
        if since < self.every or (room < MIN_ROOM and since < self.overdue):
            return False
        gc.collect()
        self._last = now
        self.collections += 1
        return True

    def take(self) -> tuple[int, float]:
        """Full collections since the last call, and the longest of them in seconds."""
        count, longest = 0, 0.0
        while True:
            try:
                pause = self._pauses.popleft()
            except IndexError:
                return count, longest
            count += 1
            longest = max(longest, pause)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        # Runs inside the collection, in whichever thread started it; generations 0 and 1
        # walk only young objects (microseconds) and are not timed.
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._began = self._clock()
        elif self._began is not None:
            self._pauses.append(self._clock() - self._began)
            self._began = None
