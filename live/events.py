"""What the daemon does, told to observers (the studio) as it happens.

The daemon's threads call ``emit`` on their own paths (the input thread for the player's
notes, the engine thread for planned notes, the sender's echo for antiphon's notes), so an
observer must be quick and must never block: the studio's only appends to a bounded buffer.
With nobody subscribed ``emit`` costs one check. An observer that raises is unsubscribed
and logged once; the daemon plays on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Observer = Callable[[str, dict[str, Any]], None]


class Events:
    def __init__(self) -> None:
        self._observers: tuple[Observer, ...] = ()  # replaced whole: readers need no lock

    def subscribe(self, observer: Observer) -> None:
        self._observers = (*self._observers, observer)

    def unsubscribe(self, observer: Observer) -> None:
        self._observers = tuple(o for o in self._observers if o is not observer)

    def emit(self, kind: str, **fields: Any) -> None:
        for observer in self._observers:
            try:
                observer(kind, fields)
            except Exception:
                log.exception("an observer of the daemon's events failed; it is dropped")
                self.unsubscribe(observer)
