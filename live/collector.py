"""Python's cyclic garbage collector, kept off the note scheduler's back.

A full (generation 2) collection walks every object the collector tracks with the GIL held,
so every thread waits for it, the note scheduler too, and a note due meanwhile goes out
late. In the daemon with its model loaded that walk was measured at 2-10 ms (one at exit:
9.7 ms) — more than the scheduler's 2 ms lateness tolerance, in a process where only a few
such collections come in half an hour, which is how a rare late event hides.

What is alive once the daemon has started (modules, the model's session and tables, the
ports) lives as long as the daemon and never becomes garbage. ``gc.freeze`` moves it out of
every later collection, so a full collection walks only what the session allocated since.
Collections still happen (cyclic garbage is still freed); their pauses are timed, and
``--stats`` reports the longest beside the late events, so a late note that coincides with
one can be told from one that does not.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable

KEPT = 1024  # pauses remembered between two ``take`` calls (nobody taking: no growth)


class CollectorPauses:
    """Freezes what is alive at ``install`` and times the full collections after it."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._began: float | None = None
        # No lock: the callback runs inside a collection, which any allocation can start,
        # in a thread that may already hold one. deque.append and popleft are atomic.
        self._pauses: deque[float] = deque(maxlen=KEPT)
        self.frozen = 0  # objects moved out of every later collection
        self._installed = False

    def install(self) -> None:
        gc.collect()  # what start-up left as garbage goes now, not frozen forever
        gc.freeze()
        self.frozen = gc.get_freeze_count()
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

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
        # Runs inside the collection, in whichever thread triggered it; generations 0 and
        # 1 walk only young objects (microseconds) and are not timed.
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._began = self._clock()
        elif self._began is not None:
            self._pauses.append(self._clock() - self._began)
            self._began = None
