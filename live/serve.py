"""``antiphon live`` in the foreground: run the daemon until SIGINT or SIGTERM.

The signal handlers only set the daemon's stop event (the main thread then leaves
``Daemon.run``), and shutdown runs however the run ends, so no note is left hanging.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Protocol

from antiphon.live.daemon import Daemon, DaemonConfig


class Attached(Protocol):
    """Something run beside the daemon (the studio): its URL goes on the ready line."""

    url: str

    def close(self) -> None: ...


def serve(
    config: DaemonConfig,
    ready: Callable[[str], None] = lambda line: None,
    attach: Callable[[Daemon], Attached] | None = None,
) -> int:
    """Open the ports, start the threads, report ``Daemon.ready_line`` to ``ready`` and run
    until a signal; must be called from the main thread (signal handlers live there).
    ``attach`` starts what runs beside the daemon once it plays, and is closed first."""
    daemon = Daemon(config)
    extra: Attached | None = None
    stop = daemon.stop_event

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        daemon.start()
        extra = attach(daemon) if attach is not None else None
        ready(daemon.ready_line + (f" studio={extra.url}" if extra is not None else ""))
        status = daemon.run()
    finally:
        try:
            if extra is not None:
                extra.close()
        finally:  # whatever the studio's close does, the notes still go off
            daemon.shutdown()
    return status
