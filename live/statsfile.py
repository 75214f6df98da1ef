"""``--stats FILE``: one JSON line per answer, on disk as soon as the answer is scored.

Each batch of lines is appended and fsynced (``antiphon.atomic.append_text``): after a crash
the file holds every complete line, and a line torn by a power cut mid-append is dropped by
the next append and skipped by ``read_lines``. A disk that fails is logged once; the lines
wait in memory and go out with the next batch, and the daemon keeps playing.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

from antiphon.atomic import append_text
from antiphon.errors import UserError

log = logging.getLogger(__name__)


class StatsFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.pending = ""
        self.failing = False

    @contextlib.contextmanager
    def batch(self) -> Iterator[io.StringIO]:
        """Collect lines (``f.write(line + "\\n")``); they are appended when the block ends."""
        buf = io.StringIO()
        yield buf
        self.pending += buf.getvalue()
        self.flush()

    def flush(self) -> bool:
        if not self.pending:
            return True
        try:
            append_text(self.path, self.pending, what="stats")
        except UserError as exc:
            if not self.failing:
                log.warning("%s; still playing, keeping the lines to write later", exc)
                self.failing = True
            return False
        if self.failing:
            log.warning("%s: the stats are being written again", self.path)
            self.failing = False
        self.pending = ""
        return True
