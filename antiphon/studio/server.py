"""The studio's server: the page, its WebSocket and its downloads, inside the daemon.

One thread runs one asyncio loop with one ``websockets`` server on 127.0.0.1 (loopback only;
requests that name another host, or a WebSocket opened from another origin, are refused).
It is a thin translation: the daemon's events (live/events.py) reach it through the hub's
bounded buffer; a page's note goes into the daemon's input queue as a note from its MIDI
port would; a page's control goes through ``Daemon.control``, the path a CC takes. Nothing
here runs on the daemon's threads but ``Hub.observe``.

Plain HTTP (GET only, as ``websockets`` answers it): ``/`` and ``/static/*`` the page,
``/samples/PROGRAM/PITCH.wav`` the sampler's notes (rendered from the SoundFont once,
then kept), ``/take/T/V.mid`` and ``.wav`` a variation, ``/session.mid`` the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from antiphon.errors import UserError
from antiphon.live import controls
from antiphon.studio import protocol
from antiphon.studio.hub import Hub
from antiphon.studio.takes import Take, Takes

if TYPE_CHECKING:
    from antiphon.live.daemon import Daemon

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
PUMP_SECONDS = 0.01  # how often events go out to the pages
CLOCK_SECONDS = 0.5
SAMPLE_PITCHES = tuple(range(21, 109, 3))  # the page shifts each to the pitches near it
PROGRAMS = {"player": 0, "antiphon": 4}  # GM: acoustic grand, electric piano
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


def _response(status: int, body: bytes, kind: str, name: str | None = None) -> Response:
    reasons = {200: "OK", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"}
    headers = Headers(
        [
            ("Content-Type", kind),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    if name is not None:
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(status, reasons.get(status, "Error"), headers, body)


def _text(status: int, text: str) -> Response:
    return _response(status, text.encode(), "text/plain; charset=utf-8")


class Studio:
    def __init__(
        self, daemon: Daemon, port: int = DEFAULT_PORT, soundfont: str | None = None
    ) -> None:
        self.daemon = daemon
        self.requested_port = port
        self.port = port
        self.soundfont = soundfont
        self.hub = Hub(controls.current(daemon.performer), daemon.config.bpm)
        self.folder = Path(tempfile.mkdtemp(prefix="antiphon-studio-"))
        self.takes = Takes(self.folder, str(daemon.voice.model.path))
        self.clients: set[ServerConnection] = set()
        self._samples: dict[int, dict[int, bytes]] = {}
        self._sample_locks: dict[int, asyncio.Lock] = {}
        self._jobs: set[asyncio.Task] = set()
        self._switching = False  # a model is being opened for the page
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="antiphon-studio", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> str:
        """Serve; returns the URL once the port is bound (a taken port: ``UserError``)."""
        self.daemon.events.subscribe(self.hub.observe)
        self.thread.start()
        self._ready.wait(30)
        if self._error is not None or not self._ready.is_set():
            self.daemon.events.unsubscribe(self.hub.observe)
            raise UserError(
                f"the studio cannot listen on {HOST}:{self.requested_port} ({self._error}); "
                "choose another port with --web-port"
            )
        return self.url

    def close(self) -> None:
        self.daemon.events.unsubscribe(self.hub.observe)
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=5)
        self.takes.close()
        shutil.rmtree(self.folder, ignore_errors=True)  # uploads and variations of this run

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start(), or logged once it served
            self._error = exc
            if self._ready.is_set():
                log.exception("the studio's server stopped")
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._connection,
            HOST,
            self.requested_port,
            process_request=self._http,
            max_size=protocol.MAX_FRAME,
            compression=None,
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._clock())]
            await self._stop.wait()
            for task in tasks:
                task.cancel()

    async def _pump(self) -> None:
        while True:
            await asyncio.sleep(PUMP_SECONDS)
            for msg in self.hub.drain(self.daemon.now()):
                broadcast(self.clients, msg)

    async def _clock(self) -> None:
        while True:
            await asyncio.sleep(CLOCK_SECONDS)
            msg = protocol.message("clock", now=self.daemon.now(), dropped=self.hub.dropped)
            broadcast(self.clients, msg)

    # -- HTTP ------------------------------------------------------------------------------
    def _allowed_host(self, host: str | None) -> bool:
        return host in (f"{HOST}:{self.port}", f"localhost:{self.port}")

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self._allowed_host(request.headers.get("Host")):
            return _text(403, "the studio answers only at " + self.url)
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and not self._allowed_host(origin.partition("://")[2]):
                return _text(403, "a page from another origin may not talk to the studio")
            return None
        try:
            return await self._route(path)
        except UserError as exc:
            return _text(503, str(exc))

    async def _route(self, path: str) -> Response:
        parts = path.strip("/").split("/")
        if path == "/":
            return self._static("index.html")
        if len(parts) == 2 and parts[0] == "static":
            return self._static(parts[1])
        if len(parts) == 3 and parts[0] == "samples" and parts[2].endswith(".wav"):
            program, pitch = parts[1], parts[2][:-4]
            if program.isdigit() and pitch.isdigit():
                wav = (await self._program(int(program))).get(int(pitch))
                if wav is not None:
                    return _response(200, wav, "audio/wav")
        if len(parts) == 3 and parts[0] == "take" and parts[1].isdigit():
            index, _, ext = parts[2].partition(".")
            if index.isdigit() and ext in ("mid", "wav"):
                return await self._variation(int(parts[1]), int(index), ext)
        if path == "/session.mid":
            if self.hub.recorder is None:
                return _text(404, "nothing recorded yet: press Record first")
            data = self.hub.recorder.to_bytes(self.daemon.now())
            return _response(200, data, "audio/midi", "antiphon-session.mid")
        return _text(404, f"no such page: {path}")

    def _static(self, name: str) -> Response:
        files = resources.files("antiphon.studio") / "static"
        entry = files / name
        suffix = Path(name).suffix
        if "/" in name or name.startswith(".") or suffix not in TYPES or not entry.is_file():
            return _text(404, f"no such file: {name}")
        return _response(200, entry.read_bytes(), TYPES[suffix])

    async def _program(self, program: int) -> dict[int, bytes]:
        """Every sample of a GM program, rendered once (in a thread) and kept."""
        if not 0 <= program <= 127:
            return {}
        lock = self._sample_locks.setdefault(program, asyncio.Lock())
        async with lock:
            if program not in self._samples:
                from antiphon.sound.samples import render_samples

                loop = asyncio.get_running_loop()
                self._samples[program] = await loop.run_in_executor(
                    None, render_samples, self.soundfont, program, SAMPLE_PITCHES
                )
        return self._samples[program]

    async def _variation(self, take: int, index: int, ext: str) -> Response:
        try:
            v = self.takes.find(take, index)
        except UserError as exc:
            return _text(404, str(exc))
        name = f"antiphon-take{take}-{index + 1}"
        if ext == "mid":
            return _response(200, v.path.read_bytes(), "audio/midi", name + ".mid")
        wav = v.path.with_suffix(".wav")
        if not wav.exists():
            from antiphon.sound.render import render_midi

            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, render_midi, v.path, wav, self.soundfont)
        return _response(200, wav.read_bytes(), "audio/wav", name + ".wav")

    # -- the WebSocket ---------------------------------------------------------------------
    def hello(self) -> str:
        d = self.daemon
        model = d.voice.model
        return self.hub.hello(
            now=d.now(),
            model=model.path.name,
            family=model.info.family,
            models=d.model_choices(),
            ports={"in": d.input.port_name, "out": d.output.port_name},
            cc_map=d.config.cc_map,
            takes=self.takes.to_list(),
            busy=self.takes.busy,
            sound={"pitches": SAMPLE_PITCHES, "programs": PROGRAMS},
            limits={"upload": protocol.MAX_UPLOAD, "variations": protocol.MAX_VARIATIONS},
        )

    async def _connection(self, ws: ServerConnection) -> None:
        await ws.send(self.hello())
        await ws.send(self.hub.recording_message())
        self.clients.add(ws)
        try:
            async for text in ws:
                await self._request(ws, text)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(ws)

    async def _request(self, ws: ServerConnection, text: str | bytes) -> None:
        kind = None
        try:
            req = protocol.parse_request(text)
            kind = req.type
            handler: Callable[[ServerConnection, dict[str, Any]], None] = getattr(
                self, "_on_" + req.type
            )
            handler(ws, req.fields)
        except UserError as exc:
            await ws.send(protocol.error(str(exc), kind))

    def _on_note(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        ch = (self.daemon.config.input_channel or 1) - 1
        data = (
            [0x90 | ch, f["pitch"], f["velocity"]] if f["velocity"] else [0x80 | ch, f["pitch"], 0]
        )
        # Exactly where the MIDI input's reader puts what it reads.
        self.daemon.queue.put(("in", data, self.daemon.now()))

    def _on_pedal(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        self._on_cc(ws, {"number": 64, "value": f["value"]})

    def _on_cc(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        ch = (self.daemon.config.input_channel or 1) - 1
        self.daemon.queue.put(("in", [0xB0 | ch, f["number"], f["value"]], self.daemon.now()))

    def _on_control(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        self.daemon.control(f["name"], f["value"])

    def _on_record(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        self.hub.set_recording(f["on"])
        broadcast(self.clients, self.hub.recording_message())

    def _on_continue(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        self._not_busy()
        prompt = self.takes.upload(f["name"], f["data"])
        options = {k: f[k] for k in ("bars", "seconds", "temperature", "variations", "seed")}
        self._make(ws, self.takes.plan(f["name"], prompt, options))

    def _on_continue_from(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        self._not_busy()
        self._make(ws, self.takes.continue_from(f["take"], f["variation"]))

    def _on_regenerate(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        self._not_busy()
        self._make(ws, self.takes.regenerate())

    def _on_undo(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        self._not_busy()
        self.takes.undo()
        self._send_takes()

    def _on_model(self, ws: ServerConnection, f: dict[str, Any]) -> None:
        if self._switching:
            raise UserError("a model is being loaded; wait for it")
        self._switching = True
        task = asyncio.create_task(self._switch(ws, f["name"]))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _switch(self, ws: ServerConnection, name: str) -> None:
        """Open the model off the daemon's threads (a second or so), then hand it over: the
        daemon keeps playing the old one until then, and keeps it if this fails."""
        try:
            loop = asyncio.get_running_loop()
            voice = await loop.run_in_executor(None, self.daemon.load_model, name)
            self.daemon.use_voice(voice)
            self.takes.model = str(voice.model.path)  # continuations use it too
        except Exception as exc:
            text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, UserError):
                log.exception("studio: switching to %s failed", name)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(protocol.error(f"cannot switch models: {text}", "model"))
        finally:
            self._switching = False

    def _not_busy(self) -> None:
        if self.takes.busy:
            raise UserError("a continuation is being made; wait for it to finish")

    def _make(self, ws: ServerConnection, take: Take) -> None:
        """Start making ``take`` in the worker; the page keeps playing meanwhile."""
        self.takes.busy = True
        self._send_takes()
        task = asyncio.create_task(self._made(ws, take))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _made(self, ws: ServerConnection, take: Take) -> None:
        from antiphon.studio.takes import run_take

        try:
            loop = asyncio.get_running_loop()
            out = str(self.takes.output_of(take))
            paths = await loop.run_in_executor(
                self.takes.pool(), run_take, str(take.prompt), out, self.takes.model, take.options
            )
            self.takes.made(take, paths)
        except Exception as exc:  # the page hears why; the stack stays as it was
            text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, UserError):
                log.exception("studio: a continuation failed")
            with contextlib.suppress(ConnectionClosed):
                await ws.send(protocol.error(f"the continuation failed: {text}", "continue"))
        finally:
            self.takes.busy = False
            self._send_takes()

    def _send_takes(self) -> None:
        msg = protocol.message("takes", takes=self.takes.to_list(), busy=self.takes.busy)
        broadcast(self.clients, msg)
