"""The remaining-time estimate of long jobs, weighted by work, on a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from antiphon.models.progress import (
    WorkBar,
    WorkEstimate,
    conversion_cost,
    cost_kind,
    format_seconds,
    probes_first,
)


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


def _simulate(order: list[tuple[str, float, float]], measured: bool) -> list[tuple[float, float]]:
    """One worker converting (kind, predicted, actual) items in ``order`` on a fake clock:
    after each item, (the estimate's remaining seconds, the true remaining seconds)."""
    clock = Clock()
    kinds: dict[str, float] = {}
    for k, predicted, _ in order:
        kinds[k] = kinds.get(k, 0.0) + predicted
    est = WorkEstimate(sum(kinds.values()), kinds=kinds, now=clock)
    left = sum(actual for _, _, actual in order)
    out = []
    for k, predicted, actual in order:
        clock.t += actual
        left -= actual
        est.advance(predicted, k, *((actual, actual) if measured else (None, None)))
        remaining = est.remaining()
        assert remaining is not None
        out.append((remaining, left))
    return out


def test_each_kind_is_calibrated_by_what_its_items_measured() -> None:
    # Books cost half what the model predicts, one-tune files three times: the mix of the
    # music21 corpus, where largest-first meets the small files only at the end.
    books = [("book", 20.0, 10.0)] * 5
    tunes = [("tune", 0.1, 0.3)] * 300
    order = probes_first([*books, *tunes], kind=lambda item: item[0])
    assert [k for k, _, _ in order[:4]] == ["book", "book", "tune", "tune"]
    # Once the probes are in, the estimate is within 15 % of the truth at every step...
    for remaining, truth in _simulate(order, measured=True)[4:-1]:
        assert remaining == pytest.approx(truth, rel=0.15)
    # ... where the prediction alone was off by more than half (the bar of the last build).
    first_book = _simulate([*books, *tunes], measured=False)[0]
    assert first_book[0] < 0.5 * first_book[1]


def test_probes_are_the_smallest_and_the_median_of_each_kind() -> None:
    items = [("a", 9), ("a", 7), ("a", 5), ("a", 3), ("a", 1), ("b", 3)]  # largest first
    assert probes_first(items, kind=lambda item: item[0]) == [
        ("a", 5),
        ("a", 1),
        ("a", 9),
        ("a", 7),
        ("a", 3),
        ("b", 3),  # too few of its kind to need probing
    ]


def test_kind_follows_format_and_order_of_size(tmp_path: Path) -> None:
    small, big = tmp_path / "x.abc", tmp_path / "y.ABC"
    small.write_bytes(b"x" * 500)
    big.write_bytes(b"x" * 300_000)
    assert cost_kind(small) == ".abc<2k"
    assert cost_kind(big) == ".abc>200k"


def test_the_rate_is_the_workers_at_the_cpu_share_their_items_got() -> None:
    # Two workers on a machine that gives each half a core: ten sources of 10 s of CPU,
    # each 20 s of wall time. After the first two, eight are left: 80 s of CPU at one core
    # in all, whatever the elapsed time says (both finished at once, at 20 s).
    clock = Clock()
    est = WorkEstimate(100.0, kinds={"krn": 100.0}, workers=2, now=clock)
    clock.t += 20
    est.advance(10.0, "krn", actual=10.0, wall=20.0)
    est.advance(10.0, "krn", actual=10.0, wall=20.0)
    assert est.remaining() == pytest.approx(80.0)
