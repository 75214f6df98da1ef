"""Handing the heap a burst of input freed back to the system, once the daemon is idle.

A flood (tens of thousands of messages a second) passes through the port's reader, the
input thread and the engine, and each allocates as it goes; when the burst is over the
memory is free again, but glibc keeps it in its arenas, and the resident heap stays at the
burst's high-water mark. A 30-minute soak measured +5 MB at its first flood and a creep of
+2 MB over the next 20 minutes of floods (``antiphon bench --live --soak 30``), though
nothing the daemon holds grew (tracemalloc: flat). ``malloc_trim(0)`` returns the free
pages.

It takes glibc's arena locks while it walks the free lists (1-13 ms measured), so it runs
only when nothing is sounding or scheduled and no message has come for a second: a note
can never wait on it. Elsewhere than glibc (no ``malloc_trim``) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

BURST = 2_000  # messages since the last trim that make one worth doing (a phrase is ~50)
QUIET = 1.0  # seconds without input before trimming


def _malloc_trim() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` as a function, or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: bool(trim(0))


release_free_heap = _malloc_trim()


class HeapTrim:
    """Counts input as it arrives (the port's reader) and trims once a burst has passed."""

    def __init__(
        self,
        trim: Callable[[], bool] | None = release_free_heap,
        burst: int = BURST,
        quiet: float = QUIET,
    ) -> None:
        self._trim, self.burst, self.quiet = trim, burst, quiet
        self.since = 0  # messages since the last trim (a lost increment costs nothing)
        self.last: float | None = None  # when the last one arrived
        self.trims = 0

    def saw(self, t: float) -> None:
        self.since += 1
        self.last = t

    def idle(self, now: float, busy: bool) -> bool:
        """Called periodically; trims (and returns True) when a burst is over: no message
        at all for ``quiet`` seconds (a running MIDI clock keeps it from ever trimming),
        and nothing sounding or planned."""
        if self._trim is None or self.since < self.burst or busy:
            return False
        if self.last is not None and now - self.last < self.quiet:
            return False
        self.since = 0
        self.trims += 1
        self._trim()
        return True
