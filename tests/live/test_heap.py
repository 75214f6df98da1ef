"""Freed heap goes back to the system after a burst, and only when nothing can wait on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from antiphon.live.heap import HeapTrim, release_free_heap


def test_a_trim_comes_once_a_burst_is_over_and_nothing_plays() -> None:
    calls: list[int] = []
    heap = HeapTrim(trim=lambda: calls.append(1) or True, burst=100, quiet=1.0)
    for i in range(99):
        heap.saw(5.0 + i / 1000)
    assert not heap.idle(10.0, busy=False)  # no burst yet: ordinary playing
    heap.saw(9.5)
    assert not heap.idle(10.0, busy=False)  # input is still coming (a clock, a player)
    assert not heap.idle(12.0, busy=True)  # an answer sounds or is planned
    assert calls == []
    assert heap.idle(12.0, busy=False)
    assert calls == [1] and heap.since == 0
    assert not heap.idle(20.0, busy=False)  # once per burst
    for _ in range(100):
        heap.saw(21.0)
    assert not heap.idle(21.5, busy=False)
    assert heap.idle(22.0, busy=False)
    assert calls == [1, 1] and heap.trims == 2


def test_without_malloc_trim_it_does_nothing() -> None:
    heap = HeapTrim(trim=None, burst=1)
    heap.saw(1.0)
    assert not heap.idle(10.0, busy=False)


def _anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon")


@pytest.mark.skipif(release_free_heap is None, reason="not glibc: no malloc_trim")
def test_glibc_gives_back_the_free_pages_a_burst_left() -> None:
    """What a flood leaves: many small blocks freed between a few that stay, so the heap's
    top never comes free and glibc keeps the pages until asked."""
    assert release_free_heap is not None
    release_free_heap()
    blocks = [bytes(1000) for _ in range(60_000)]  # 60 MB in blocks malloc serves itself
    kept = blocks[::16]
    del blocks
    before = _anon_mb()
    assert release_free_heap()
    after = _anon_mb()
    assert before - after > 20, (before, after)
    assert len(kept) == 3750
