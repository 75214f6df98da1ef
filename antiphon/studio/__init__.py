"""The studio: a page on 127.0.0.1 served by the daemon (``antiphon live --web``,
``antiphon studio``). server.py serves, protocol.py is the message schema, hub.py the
shared state, takes.py continues dropped files; static/ is the page."""

from __future__ import annotations

import webbrowser
from typing import TYPE_CHECKING

from antiphon.errors import UserError

if TYPE_CHECKING:
    from antiphon.live.daemon import Daemon
    from antiphon.studio.server import Studio


def require() -> None:
    """The studio's one dependency is there, or a line saying how to install it."""
    try:
        import websockets  # noqa: F401
    except ImportError:
        raise UserError(
            "the studio needs the websockets package: pip install 'antiphon[studio]'"
        ) from None


def attach_studio(
    daemon: Daemon, port: int = 8765, soundfont: str | None = None, open_page: bool = False
) -> Studio:
    """Serve the studio for a started daemon; with ``open_page`` open it in the browser."""
    require()
    from antiphon.studio.server import Studio

    studio = Studio(daemon, port, soundfont)
    studio.start()
    if open_page:
        webbrowser.open(studio.url)
    return studio
