"""The studio's messages: one JSON object per WebSocket text frame, ``type`` first.

Times are seconds on the daemon's clock (``now`` in ``hello`` and ``clock`` lets the page
map them onto its own). Pitches and velocities are MIDI numbers.

Server -> page:

- ``hello``: sent on connect, the whole state, so a reopened page or a second tab shows what
  the first one does: ``now``, ``model``, ``family``, ``ports``, ``controls`` (the table of
  live/controls.py), ``values``, ``cc_map``, ``history`` (recent messages of the kinds
  below), ``answers`` (recent stats rows), ``recording``, ``takes``, ``sound``, ``limits``,
  ``models`` (the ``.onnx`` files of the ``--models`` folder the page may switch to).
- ``note``: ``part`` ("player" | "antiphon"), ``t``, ``pitch``, ``velocity`` (0: note-off)
  — as the daemon heard them / as they sounded on its output port.
- ``pedal``: ``part``, ``t``, ``value``.
- ``planned``: ``answer``, ``notes`` ``[[start, end, pitch, velocity], ...]`` — antiphon's
  notes as soon as they are scheduled, ahead of the time they sound.
- ``cancel``: ``t`` — planned notes from ``t`` on will not sound (barge-in, re-plan, panic).
- ``phrase_end``: ``t``; ``barge_in``: ``t``.
- ``answer``: ``row`` — the stats row of one answer (``latency_ms``, ``phrase_end``, ...).
- ``controls``: ``values`` — every control as the engine has it now (after a slider, a CC).
- ``clock``: ``now``, ``dropped`` (events the server could not keep up with, in total).
- ``recording``: ``on``, ``notes``.
- ``takes``: ``takes``, ``busy`` — the continue-a-file stack (see takes.py).
- ``model``: ``model``, ``family``, ``models`` — antiphon plays this model from now on.
- ``error``: ``message``, ``request`` (the type of the request it answers, if known).

Page -> server:

- ``note``: ``pitch``, ``velocity`` (0: note-off) — played into the daemon as if from its
  MIDI input. ``pedal``: ``value``; ``cc``: ``number``, ``value`` (a Web MIDI device's
  controllers, which the daemon maps as it maps its port's: ``--cc-map``).
- ``control``: ``name``, ``value`` (``panic`` takes no value).
- ``record``: ``on``.
- ``continue``: ``name``, ``data`` (the file, base64), ``bars`` or ``seconds``,
  ``temperature``, ``variations``, ``seed`` (optional).
- ``continue_from``: ``take``, ``variation``; ``regenerate``; ``undo``.
- ``model``: ``name`` — one of ``models``: switch to it (what the old one played is released;
  a model that cannot be opened is an ``error``, and the old one plays on).

A request the server cannot take (not JSON, an unknown type, a missing or bad field) gets one
``error`` back to the page that sent it; nothing else changes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from antiphon.errors import UserError

VERSION = 1
MAX_UPLOAD = 16 * 2**20  # bytes of MIDI: the MIDI reader's own limit
# A frame holds the upload in base64 (4/3 of it) and its JSON; a bigger one closes the socket
# (1009) before it is read, and the page says why.
MAX_FRAME = MAX_UPLOAD * 4 // 3 + 2**16
MAX_VARIATIONS = 8
MAX_BARS = 64
MAX_SECONDS = 120.0


class ProtocolError(UserError):
    """A request the server cannot take; the message goes back to the page."""


@dataclass(frozen=True)
class Request:
    type: str
    fields: dict[str, Any]


def _number(fields: dict[str, Any], name: str, low: float, high: float) -> float:
    v = fields.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ProtocolError(f"{name} needs a number, not {v!r}")
    if not low <= v <= high:
        raise ProtocolError(f"{name} must lie in {low:g}..{high:g}, not {v!r}")
    return float(v)


def _int(fields: dict[str, Any], name: str, low: int, high: int) -> int:
    v = _number(fields, name, low, high)
    if v != int(v):
        raise ProtocolError(f"{name} needs a whole number, not {v!r}")
    return int(v)


def parse_request(text: str | bytes) -> Request:
    """A page's request, checked; a ``ProtocolError`` says what is wrong with it."""
    if isinstance(text, bytes):
        raise ProtocolError("binary frames are not understood; send JSON text")
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("the request is not valid JSON") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError('a request is a JSON object with a "type"')
    kind = msg["type"]
    fields = {k: v for k, v in msg.items() if k != "type"}
    check = _CHECKS.get(kind)
    if check is None:
        raise ProtocolError(f"unknown request type {kind!r}; known: {', '.join(_CHECKS)}")
    return Request(kind, check(fields))


def _note(f: dict[str, Any]) -> dict[str, Any]:
    return {"pitch": _int(f, "pitch", 0, 127), "velocity": _int(f, "velocity", 0, 127)}


def _pedal(f: dict[str, Any]) -> dict[str, Any]:
    return {"value": _int(f, "value", 0, 127)}


def _cc(f: dict[str, Any]) -> dict[str, Any]:
    return {"number": _int(f, "number", 0, 127), "value": _int(f, "value", 0, 127)}


def _control(f: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(f.get("name"), str):
        raise ProtocolError('a control request needs a "name"')
    return {"name": f["name"], "value": f.get("value")}  # the value is the control's to check


def _record(f: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(f.get("on"), bool):
        raise ProtocolError('record needs "on": true or false')
    return {"on": f["on"]}


def _continue(f: dict[str, Any]) -> dict[str, Any]:
    data = f.get("data")
    if not isinstance(data, str):
        raise ProtocolError('continue needs the file as base64 in "data"')
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("the uploaded file is not valid base64") from None
    if len(raw) > MAX_UPLOAD:
        raise ProtocolError(f"the file is {len(raw) / 2**20:.1f} MB; the limit is 16 MB")
    name = f.get("name") if isinstance(f.get("name"), str) else "upload.mid"
    return {"name": name[:200], "data": raw, **options(f)}


def options(f: dict[str, Any]) -> dict[str, Any]:
    """The continuation's options: a length in bars or seconds, temperature, how many
    variations, a seed (None: the server picks one)."""
    out: dict[str, Any] = {"bars": None, "seconds": None}
    if f.get("bars") is not None:
        out["bars"] = _number(f, "bars", 0.25, MAX_BARS)
    elif f.get("seconds") is not None:
        out["seconds"] = _number(f, "seconds", 0.5, MAX_SECONDS)
    else:
        out["bars"] = 4.0
    out["temperature"] = _number({"t": f.get("temperature", 1.0)}, "t", 0.0, 2.0)
    out["variations"] = _int(
        {"variations": f.get("variations", 3)}, "variations", 1, MAX_VARIATIONS
    )
    seed = f.get("seed")
    out["seed"] = None if seed is None else _int(f, "seed", 0, 2**31 - 1)
    return out


def _continue_from(f: dict[str, Any]) -> dict[str, Any]:
    return {"take": _int(f, "take", 0, 2**31), "variation": _int(f, "variation", 0, 1000)}


def _model(f: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(f.get("name"), str) or not f["name"]:
        raise ProtocolError('a model request needs the "name" of one of the models')
    return {"name": f["name"][:300]}


def _nothing(f: dict[str, Any]) -> dict[str, Any]:
    return {}


_CHECKS = {
    "note": _note,
    "pedal": _pedal,
    "cc": _cc,
    "control": _control,
    "record": _record,
    "continue": _continue,
    "continue_from": _continue_from,
    "regenerate": _nothing,
    "undo": _nothing,
    "model": _model,
}


def encode(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


def message(kind: str, **fields: Any) -> str:
    return encode({"type": kind, **fields})


def error(text: str, request: str | None = None) -> str:
    return message("error", message=text, request=request)
