"""Progress of long jobs whose items differ in size: a remaining time weighted by work.

Counting files lies about the music21 corpus: 1,059 of its 3,200 sources are one-tune ABC
files that convert in a tenth of a second, while one Essen folk-song book (554 tunes) takes
half a minute and a Beethoven quartet movement ten seconds. ``conversion_cost`` estimates a
source's cost from its format and size; ``WorkEstimate`` turns the work done so far, in
those units, into a remaining time; ``WorkBar`` shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Seconds of one core per kB of source, by format (fitted on this project's 2-core
# machine with cProfile and process_time over a sample of the corpus: ABC books, Humdrum
# masses, compressed MusicXML quartets and chorales, uncompressed MusicXML of the Trecento
# collection, whose markup is mostly layout), plus a fixed cost per source.
_SECONDS_PER_KB = {".abc": 0.12, ".krn": 0.1, ".mxl": 0.12, ".xml": 0.004, ".musicxml": 0.004}
_SECONDS_PER_SOURCE = 0.1


def conversion_cost(source: str | Path) -> float:
    """The expected cost of converting one music21 source, in seconds of one core."""
    path = Path(source)
    try:
        kb = path.stat().st_size / 1000
    except OSError:
        kb = 0.0
    return _SECONDS_PER_SOURCE + _SECONDS_PER_KB.get(path.suffix.lower(), 0.05) * kb


class WorkEstimate:
    """Remaining time = remaining work at the rate the work done *in this run* went.

    Work done before the run (a resumed build's journal) counts towards the fraction done
    but not towards the rate: it took no time of this run.
    """

    def __init__(self, total: float, *, now: Callable[[], float] = time.monotonic) -> None:
        self.total = float(total)
        self.done = 0.0
        self._now = now
        self._start = now()

    def advance(self, work: float) -> None:
        self.done += work

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    def elapsed(self) -> float:
        return self._now() - self._start

    def remaining(self) -> float | None:
        """Seconds left, or None until some work is done (no rate to go by yet)."""
        if self.done <= 0:
            return None
        return max(0.0, self.total - self.done) * self.elapsed() / self.done


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class WorkBar:
    """A tqdm bar whose percentage and remaining time are by work, whose count is by
    source, and which carries a count of failures."""

    def __init__(
        self,
        *,
        total_sources: int,
        done_sources: int,
        work: float,
        desc: str,
        enabled: bool,
        failed: int = 0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        from tqdm import tqdm

        from antiphon.models.dataset import progress_interval

        class Bar(tqdm):  # type: ignore[misc,type-arg]
            line = ""

            @property
            def format_dict(self) -> dict[str, Any]:
                # tqdm formats ``bar_format`` with this dict: our own field, not its ETA.
                return {**super().format_dict, "line": self.line}

        self.estimate = WorkEstimate(work, now=now)
        self.sources = (done_sources, total_sources)
        self.failed = failed
        self._bar: Any = Bar(
            total=1000,
            desc=desc,
            disable=not enabled,
            mininterval=progress_interval(),
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {line}",
        )
        self._show()
        self._bar.refresh()

    def advance(self, work: float, *, failed: int = 0) -> None:
        self.estimate.advance(work)
        self.failed += failed
        self.sources = (self.sources[0] + 1, self.sources[1])
        self._show()

    def line(self) -> str:
        e = self.estimate
        done, total = self.sources
        times = f"{format_seconds(e.elapsed())}<{format_seconds(e.remaining())}"
        text = f"{done}/{total} sources [{times}]"
        return text + (f", failed={self.failed}" if self.failed else "")

    def _show(self) -> None:
        self._bar.line = self.line()
        self._bar.update(round(1000 * self.estimate.fraction) - self._bar.n)

    def __enter__(self) -> WorkBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
