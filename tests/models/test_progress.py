"""The remaining-time estimate of long jobs, weighted by work, on a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from antiphon.models.progress import WorkBar, WorkEstimate, conversion_cost, format_seconds


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_remaining_time_goes_by_work_not_by_count() -> None:
    clock = Clock()
    est = WorkEstimate(100.0, now=clock)
    assert est.remaining() is None  # no rate yet
    clock.t += 30
    est.advance(60.0)  # one big item: 60 % of the work in 30 s
    assert est.fraction == pytest.approx(0.6)
    assert est.remaining() == pytest.approx(20.0)  # 40 units at 2 units/s
    clock.t += 10
    for _ in range(40):  # forty small items finish the last 40 %
        est.advance(1.0)
    assert est.remaining() == pytest.approx(0.0)
    assert est.fraction == 1.0


def test_work_done_before_this_run_counts_in_the_fraction_not_the_rate() -> None:
    clock = Clock()
    bar = WorkBar(total_sources=10, done_sources=4, work=50.0, desc="x", enabled=False, now=clock)
    clock.t += 5
    bar.advance(10.0, failed=1)
    # 10 of the 50 units left took 5 s: 40 more take 20 s, whatever the journal held.
    assert bar.estimate.remaining() == pytest.approx(20.0)
    assert bar.line() == "5/10 sources [0:05<0:20], failed=1"


def test_cost_follows_format_and_size(tmp_path: Path) -> None:
    def write(name: str, kb: int) -> Path:
        p = tmp_path / name
        p.write_bytes(b"x" * kb * 1000)
        return p

    book = conversion_cost(write("book.abc", 200))
    tune = conversion_cost(write("tune.abc", 1))
    layout = conversion_cost(write("layout.xml", 200))
    assert book > 50 * tune  # an ABC book of many tunes against a single tune
    assert book > 10 * layout  # uncompressed MusicXML is mostly markup
    assert conversion_cost(tmp_path / "missing.krn") > 0


def test_format_seconds() -> None:
    assert format_seconds(None) == "?"
    assert format_seconds(65.4) == "1:05"
    assert format_seconds(3725) == "1:02:05"
