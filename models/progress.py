"""Progress of long jobs whose items differ in size: a remaining time weighted by work.

Counting files lies about the music21 corpus: 1,059 of its 3,200 sources are one-tune ABC
files that convert in a tenth of a second, while one Essen folk-song book (554 tunes) takes
half a minute and a Beethoven quartet movement ten seconds. ``conversion_cost`` estimates a
source's cost from its format and size; ``WorkEstimate`` turns the work done so far, in
those units, into a remaining time, each kind of source's prediction corrected by what its
sources really cost as they finish; ``WorkBar`` shows it.

The prediction alone misled: on a quiet 2-core machine the first full build said 9 minutes
were left after 1.5 minutes and 18 after 6, of a build that took 13 (the large sources
that go first cost less than predicted, the thousands of small ones more). So a few
sources of each kind go first (``probes_first``) and calibrate every kind early.
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


def cost_kind(source: str | Path) -> str:
    """What a source's measured cost is pooled with: its format and its order of size (the
    fixed cost per source dominates a one-tune file, the size a whole book)."""
    path = Path(source)
    try:
        kb = path.stat().st_size / 1000
    except OSError:
        kb = 0.0
    size = "<2k" if kb < 2 else "<20k" if kb < 20 else "<200k" if kb < 200 else ">200k"
    return f"{path.suffix.lower()}{size}"


def probes_first(items: list[Any], kind: Callable[[Any], str], per_kind: int = 2) -> list[Any]:
    """``items`` (largest first) with a few of each kind moved to the front: the smallest
    and the median of each. Their measured costs calibrate the estimate of every kind
    within the first minute, where largest-first alone would meet the small kinds, whose
    fixed costs the prediction knows least, only at the end."""
    by_kind: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_kind.setdefault(kind(item), []).append(i)
    chosen: list[int] = []
    for indices in by_kind.values():
        if len(indices) <= 2 * per_kind:  # a kind this small is over soon anyway
            continue
        picks = [indices[-1], indices[len(indices) // 2]][:per_kind]
        chosen += sorted(set(picks))
    first = set(chosen)
    return [items[i] for i in chosen] + [item for i, item in enumerate(items) if i not in first]


class WorkEstimate:
    """Remaining time = the work left, each kind's predicted cost scaled by what its items
    measured so far, at the rate this run has gone.

    Costs are predicted per item (``conversion_cost``, seconds of one core). An item that
    reports what it really cost (``advance(..., actual=...)``: a worker's CPU seconds)
    calibrates its kind: the kind's predictions are scaled by measured / predicted over its
    finished items, pulled towards the ratio of all kinds while its own measurements are
    few (the pooled ratio weighs as much as ``PRIOR`` of the kind's items). Without
    measurements the prediction is taken as is. Work done before the run (a resumed build's
    journal) is not in ``total``: it took no time of this run.

    The rate: with items' wall times too (``wall=``), ``workers`` in parallel, each getting
    the CPU share its items got (CPU seconds over wall seconds: a loaded machine gives
    less). Work finished over time elapsed, the rate without them, lags by the items under
    way: two workers each half-way through a 30-second source had finished nothing.
    """

    PRIOR = 0.25

    def __init__(
        self,
        total: float,
        *,
        kinds: dict[str, float] | None = None,
        workers: int = 1,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = float(total)
        self.workers = max(1, workers)
        self._cpu = self._wall = 0.0  # over the finished items that reported both
        self.done = 0.0
        self._now = now
        self._start = now()
        # predicted work not yet done, by kind ("" when the caller gives no kinds)
        self._left: dict[str, float] = dict(kinds) if kinds else {"": self.total}
        self._done: dict[str, float] = {}  # predicted work done in this run, by kind
        self._measured: dict[str, list[float]] = {}  # kind -> [measured, predicted]
        self._items: dict[str, int] = {}  # kind -> items measured

    def advance(
        self, work: float, kind: str = "", actual: float | None = None, wall: float | None = None
    ) -> None:
        self.done += work
        if actual is not None and wall is not None and wall > 0:
            self._cpu += actual
            self._wall += wall
        kind = kind if kind in self._left else next(iter(self._left))
        self._left[kind] = max(0.0, self._left[kind] - work)
        self._done[kind] = self._done.get(kind, 0.0) + work
        if actual is not None:
            m = self._measured.setdefault(kind, [0.0, 0.0])
            m[0] += actual
            m[1] += work
            self._items[kind] = self._items.get(kind, 0) + 1

    def ratio(self, kind: str) -> float:
        """Measured over predicted cost for ``kind`` (1.0 before anything was measured)."""
        measured = sum(m[0] for m in self._measured.values())
        predicted = sum(m[1] for m in self._measured.values())
        if predicted <= 0:
            return 1.0
        pooled = measured / predicted
        own = self._measured.get(kind)
        if own is None:
            return pooled
        # The pooled ratio weighs as much as PRIOR of the kind's own items: one odd probe
        # does not set its kind alone, a few of them do.
        n = self._items.get(kind, 1)
        prior = self.PRIOR * own[1] / n
        return (own[0] + prior * pooled) / (own[1] + prior)

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    def elapsed(self) -> float:
        return self._now() - self._start

    def remaining(self) -> float | None:
        """Seconds left, or None until some work is done (no rate to go by yet)."""
        left = sum(w * self.ratio(k) for k, w in self._left.items())
        if self._wall > 0:
            share = min(1.0, self._cpu / self._wall)
            return left / (self.workers * max(share, 1e-3))
        done = sum(w * self.ratio(k) for k, w in self._done.items())
        if done <= 0:
            return None
        return left * self.elapsed() / done


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
        kinds: dict[str, float] | None = None,
        workers: int = 1,
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

        self.estimate = WorkEstimate(work, kinds=kinds, workers=workers, now=now)
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

    def advance(
        self,
        work: float,
        *,
        failed: int = 0,
        kind: str = "",
        actual: float | None = None,
        wall: float | None = None,
    ) -> None:
        self.estimate.advance(work, kind, actual, wall)
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
