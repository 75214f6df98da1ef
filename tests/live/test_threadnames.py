"""Kernel thread names (live/threadnames.py): what a per-thread CPU reading shows."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from antiphon.live.threadnames import name_this_python_thread, named, thread_name

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl: Linux")


def _comm(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_a_thread_started_inside_named_keeps_the_name_and_the_caller_gets_its_own_back() -> None:
    """As libjack's process thread, started by the open of a client, does."""
    before = thread_name()
    seen: list[str] = []
    started = threading.Event()
    stop = threading.Event()

    def child() -> None:
        seen.append(_comm(threading.get_native_id()))
        started.set()
        stop.wait(5)

    with named("jack-in"):
        assert thread_name() == "jack-in"
        t = threading.Thread(target=child)
        t.start()
    started.wait(5)
    assert seen == ["jack-in"]
    assert thread_name() == before
    assert _comm(t.native_id) == "jack-in"  # for its whole life
    stop.set()
    t.join()


def test_a_python_thread_names_itself_without_the_prefix_and_within_15_bytes() -> None:
    names: list[str] = []

    def run() -> None:
        name_this_python_thread()
        names.append(_comm(threading.get_native_id()))

    for name in ("antiphon-scheduler", "a-very-long-thread-name-indeed"):
        t = threading.Thread(target=run, name=name)
        t.start()
        t.join()
    assert names == ["scheduler", "a-very-long-thr"]
