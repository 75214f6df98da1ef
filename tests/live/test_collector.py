"""Python's collector in the daemon: what is alive at start is frozen out of every later
full collection, and the full collections after it are timed for --stats."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator

import pytest

from antiphon.live.collector import CollectorPauses


@pytest.fixture
def pauses() -> Iterator[CollectorPauses]:
    ticks = itertools.count(0.0, 0.004)  # each clock read 4 ms after the one before
    p = CollectorPauses(clock=lambda: next(ticks))
    yield p
    p.uninstall()
    gc.unfreeze()  # the rest of the test session collects as before


def _in_generation_2(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects(generation=2))


def test_what_is_alive_at_install_is_left_out_of_full_collections(
    pauses: CollectorPauses,
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
    pauses: CollectorPauses,
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


def test_a_collection_that_drops_a_cycle_is_timed(pauses: CollectorPauses) -> None:
    pauses.install()
    pauses.take()
    a: list[object] = []
    a.append(a)  # garbage only the cyclic collector can free
    del a
    assert gc.collect() >= 1
    assert pauses.take()[0] == 1


def test_uninstalled_it_times_nothing(pauses: CollectorPauses) -> None:
    pauses.install()
    pauses.uninstall()
    pauses.take()
    gc.collect()
    assert pauses.take() == (0, 0.0)
