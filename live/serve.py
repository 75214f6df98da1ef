"""``antiphon live`` in the foreground: run the daemon until SIGINT or SIGTERM.

The signal handlers only set the daemon's stop event (the main thread then leaves
``Daemon.run``), and shutdown runs however the run ends, so no note is left hanging.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from antiphon.live.daemon import Daemon, DaemonConfig


def serve(config: DaemonConfig, ready: Callable[[str], None] = lambda line: None) -> int:
    """Open the ports, start the threads, report ``Daemon.ready_line`` to ``ready`` and run
    until a signal; must be called from the main thread (signal handlers live there)."""
    daemon = Daemon(config)
    stop = daemon.stop_event

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        daemon.start()
        ready(daemon.ready_line)
        daemon.run()
    finally:
        daemon.shutdown()
    return 0
