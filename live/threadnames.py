"""Kernel names for the daemon's threads, so a per-thread reading of its CPU (``top -H``,
``/proc/PID/task/*/comm``, the live bench's idle figure) says which thread is which.

Python's thread names stay inside Python; the kernel knows every thread as "python". And the
threads that cost an idle daemon most are not Python's: each JACK client of python-rtmidi
wakes once a cycle on a thread libjack starts when the client is activated, which inherits
the name of the thread that activated it. ``named`` gives that thread a name for the
duration, so the client's process thread carries it for life. Linux only (``prctl``);
elsewhere these do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Iterator

PR_SET_NAME, PR_GET_NAME = 15, 16
_LIMIT = 15  # the kernel keeps 15 bytes and a NUL

_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        _libc = None


def thread_name() -> str | None:
    """This thread's kernel name (None where it cannot be read)."""
    if _libc is None:
        return None
    buf = ctypes.create_string_buffer(_LIMIT + 1)
    if _libc.prctl(PR_GET_NAME, buf, 0, 0, 0) != 0:
        return None
    return buf.value.decode(errors="replace")


def name_thread(name: str) -> None:
    """Give this thread a kernel name (cut to 15 bytes); a no-op where it cannot."""
    if _libc is not None:
        _libc.prctl(PR_SET_NAME, name.encode()[:_LIMIT], 0, 0, 0)


def name_this_python_thread() -> None:
    """The kernel name of this thread: its Python name less "antiphon-" (15 bytes fit
    "midi-in", "scheduler"...); call it first thing in the thread."""
    name_thread(threading.current_thread().name.removeprefix("antiphon-"))


@contextlib.contextmanager
def named(name: str) -> Iterator[None]:
    """This thread named ``name`` for the block: threads started meanwhile (a JACK
    client's process thread) keep the name; this one gets its own back."""
    old = thread_name()
    name_thread(name)
    try:
        yield
    finally:
        if old is not None:
            name_thread(old)
