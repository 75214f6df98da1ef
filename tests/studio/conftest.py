"""A WebSocket page for the studio's tests: a real client on the daemon's real server."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.live.conftest import live  # noqa: F401  (the daemon over JACK, and a keyboard)

pytest.importorskip("websockets")

WEB = ("--web", "--web-port", "0")  # daemon_args: the studio on a port the system picks


def studio_url(ready_line: str) -> str:
    found = re.search(r"studio=(http://127\.0\.0\.1:\d+/)", ready_line)
    assert found, f"no studio URL on the ready line: {ready_line}"
    return found.group(1)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Page:
    """What a page sees: every message since it connected, read by a thread."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        from websockets.sync.client import connect

        self._connection = connect(url.replace("http://", "ws://") + "ws", **kwargs)
        self.ws = self._connection.__enter__()
        self.messages: list[dict[str, Any]] = []
        self.closed: Exception | None = None
        self._lock = threading.RLock()  # predicates may look at the page again
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self.hello = self.wait_for(lambda m: m["type"] == "hello", 10)

    def _read(self) -> None:
        try:
            for text in self.ws:
                msg = json.loads(text)
                msg["_at"] = time.perf_counter()
                with self._lock:
                    self.messages.append(msg)
        except Exception as exc:  # the close, for tests that expect one
            self.closed = exc

    def send(self, **msg: Any) -> None:
        self.ws.send(json.dumps(msg))

    def of(self, kind: str, after: float = 0.0) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m["type"] == kind and m["_at"] >= after]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, after: float = 0.0
    ) -> dict[str, Any]:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self._lock:
                for m in self.messages:
                    if m["_at"] >= after and predicate(m):
                        return m
            time.sleep(0.01)
        with self._lock:
            kinds = sorted({m["type"] for m in self.messages})
        raise AssertionError(f"no such message within {timeout} s (seen: {kinds})")

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def page(live):  # type: ignore[no-untyped-def]  # noqa: F811
    daemon, _player = live
    p = Page(studio_url(daemon.ready_line))
    yield p
    p.close()


@pytest.fixture(scope="session")
def models(tmp_path_factory, trained_onnx) -> Path:  # type: ignore[no-untyped-def]
    """A folder of models: the tiny transformer, a tiny MidiNet, and a file that is not one."""
    torch = pytest.importorskip("torch")

    from antiphon.models.notes_train import NOTE_GRID
    from antiphon.models.registry import family
    from tests.checkpoints import export_verified, save_checkpoint

    folder = tmp_path_factory.mktemp("models")
    shutil.copy(trained_onnx, folder / "tiny.onnx")
    torch.manual_seed(0)
    g = family("midinet").build({"base": 8, "dense": 16, "cond_channels": 4, "noise": 8})
    work = tmp_path_factory.mktemp("midinet-work")
    ckpt = save_checkpoint(work / "ckpt.pt", "midinet", g, grid=NOTE_GRID.to_dict())
    export_verified(ckpt, folder / "midinet.onnx")
    (folder / "broken.onnx").write_bytes(b"\x00garbage, not a model\xff" * 10)
    (folder / "notes.txt").write_text("not offered: not an .onnx")
    return folder
