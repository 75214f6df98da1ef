"""Python's collector in the daemon: what is alive at start is frozen out of every later
full collection, Python starts none by itself, the daemon's run where it has room (or when
overdue), and each is timed for --stats."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator

import pytest

from antiphon.live.collector import Collector


@pytest.fixture
def pauses() -> Iterator[Collector]:
    ticks = itertools.count(0.0, 0.004)  # each clock read 4 ms after the one before
    p = Collector(clock=lambda: next(ticks))
    yield p
    p.uninstall()
    gc.unfreeze()  # the rest of the test session collects as before


def _in_generation_2(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects(generation=2))


def test_what_is_alive_at_install_is_left_out_of_full_collections(
    pauses: Collector,
) -> None:
    kept = [[i] for i in range(100)]  # container objects the collector tracks
    gc.collect()
    assert _in_generation_2(kept)
    pauses.install()
    assert not _in_generation_2(kept)
    assert pauses.frozen >= len(kept)
    made_after = [[1]]
    gc.collect()
    assert _in_generation_2(made_after)  # what the session allocates is still collected


def test_full_collections_are_counted_and_the_longest_taken_once(
    pauses: Collector,
) -> None:
    pauses.install()
    pauses.take()
    gc.collect(0)
    gc.collect(1)
    assert pauses.take() == (0, 0.0)  # young generations walk few objects: not timed
    gc.collect(2)
    gc.collect(2)
    count, longest = pauses.take()
    assert count == 2 and longest == pytest.approx(0.004)
    assert pauses.take() == (0, 0.0)


def test_a_collection_that_drops_a_cycle_is_timed(pauses: Collector) -> None:
    pauses.install()
    pauses.take()
    a: list[object] = []
    a.append(a)  # garbage only the cyclic collector can free
    del a
    assert gc.collect() >= 1
    assert pauses.take()[0] == 1


def test_uninstalled_it_times_nothing_and_python_collects_as_before(
    pauses: Collector,
) -> None:
    before = gc.get_threshold()
    pauses.install()
    assert gc.get_threshold()[2] > 10**9
    pauses.uninstall()
    assert gc.get_threshold() == before
    pauses.take()
    gc.collect()
    assert pauses.take() == (0, 0.0)


def _full_collections_while_allocating(pauses: Collector) -> int:
    pauses.take()
    kept = [[i] for i in range(300_000)]  # survivors: many young collections, then a full
    del kept
    return pauses.take()[0]


def test_python_starts_no_full_collection_by_itself(pauses: Collector) -> None:
    pauses.install()
    pauses.uninstall()  # timed, but Python's thresholds as they were
    gc.callbacks.append(pauses._callback)
    try:
        assert _full_collections_while_allocating(pauses) >= 1  # the control: Python would
    finally:
        gc.callbacks.remove(pauses._callback)
    pauses.install()
    assert _full_collections_while_allocating(pauses) == 0


def test_full_collections_run_where_there_is_room_or_when_overdue() -> None:
    p = Collector(every=30.0, overdue=300.0)
    try:
        p.install(now=0.0)
        p.take()
        assert not p.maybe_collect(10.0, room=float("inf"))  # not due yet
        assert not p.maybe_collect(31.0, room=0.01)  # due, but a note is 10 ms away
        assert p.maybe_collect(31.2, room=0.2)
        assert p.take()[0] == 1
        assert not p.maybe_collect(40.0, room=1.0)  # the next one 30 s after that
        assert not p.maybe_collect(330.0, room=0.0)
        assert p.maybe_collect(331.3, room=0.0)  # overdue: garbage is freed however busy
        assert p.collections == 2
    finally:
        p.uninstall()
        gc.unfreeze()
