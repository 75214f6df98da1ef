"""What every page shares: the daemon's events turned into messages, and the state a page
that connects late needs (recent notes and marks, the last answers, the controls).

``observe`` runs on the daemon's threads and only appends to a bounded buffer: when the
server falls behind, events are dropped and counted, never waited for. ``drain`` runs on
the server's thread and does the rest.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

from antiphon.live import controls
from antiphon.live.messages import parse
from antiphon.live.recorder import Recorder
from antiphon.studio import protocol

log = logging.getLogger(__name__)

OUTBOX = 8192  # events waiting for the server's thread
HISTORY_SECONDS = 60.0  # what a page that connects now is shown of the past
HISTORY = 6000
ANSWERS = 20
PARTS = ("player", "antiphon")


def _clean(value: Any) -> Any:
    """JSON without NaN or infinities (the page's JSON.parse has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Hub:
    def __init__(self, values: dict[str, Any], bpm: float) -> None:
        self.outbox: deque[tuple[str, dict[str, Any]]] = deque()
        self.dropped = 0
        self.history: deque[tuple[float, dict[str, Any]]] = deque(maxlen=HISTORY)
        self.answers: deque[dict[str, Any]] = deque(maxlen=ANSWERS)
        self.values = dict(values)
        self.bpm = bpm
        self.recorder: Recorder | None = None  # the last recording, kept after it stops
        self.recording = False

    # -- the daemon's threads ------------------------------------------------------------
    def observe(self, kind: str, fields: dict[str, Any]) -> None:
        if self.recording and kind in PARTS and self.recorder is not None:
            self.recorder.add(kind, fields["t"], fields["data"])
        if len(self.outbox) >= OUTBOX:  # deque appends and pops are atomic: no lock
            self.dropped += 1
            return
        self.outbox.append((kind, fields))

    # -- the server's thread ----------------------------------------------------------------
    def drain(self, now: float) -> list[str]:
        """The messages for every page since the last call; keeps the history."""
        out = []
        while self.outbox:
            kind, fields = self.outbox.popleft()
            try:
                msg = self._message(kind, fields)
            except (ValueError, TypeError, KeyError):
                log.exception("studio: cannot send a %s event", kind)
                continue
            if msg is None:
                continue
            out.append(protocol.encode(msg))
            if kind not in ("control", "model"):  # a late page's hello has both
                self.history.append((now, msg))
        while self.history and self.history[0][0] < now - HISTORY_SECONDS:
            self.history.popleft()
        return out

    def _message(self, kind: str, f: dict[str, Any]) -> dict[str, Any] | None:
        if kind in PARTS:
            m = parse(f["data"])
            if m is None:
                return None
            if m.kind in ("on", "off"):
                velocity = m.b if m.kind == "on" else 0
                return dict(
                    type="note",
                    part=kind,
                    t=f["t"],
                    pitch=m.a,
                    velocity=velocity,
                    channel=m.channel,
                )
            if m.kind == "cc" and m.a == 64:
                return dict(type="pedal", part=kind, t=f["t"], value=m.b)
            return None
        if kind == "planned":
            notes = [[s, e, p, v] for s, e, p, v in f["notes"]]
            return dict(type="planned", answer=f["answer"], notes=_clean(notes))
        if kind in ("cancel", "phrase_end", "barge_in"):
            return dict(type=kind, t=f["t"])
        if kind == "answer":
            row = _clean(f["row"])
            self.answers.append(row)
            return dict(type="answer", row=row)
        if kind == "control":
            self.values = _clean(f["values"])
            return dict(type="controls", values=self.values)
        if kind == "model":
            return dict(type="model", model=f["model"], family=f["family"], models=f["models"])
        return None

    def set_recording(self, on: bool) -> None:
        if on and not self.recording:
            self.recorder = Recorder(self.bpm)  # a new take of the session
        self.recording = on

    def recording_message(self) -> str:
        notes = 0
        if self.recorder is not None:
            notes = sum(self.recorder.notes(p) for p in PARTS)
        return protocol.message("recording", on=self.recording, notes=notes)

    def hello(self, **fields: Any) -> str:
        return protocol.message(
            "hello",
            version=protocol.VERSION,
            controls=[c.to_dict() for c in controls.CONTROLS.values()],
            values=self.values,
            history=[m for _, m in self.history],
            answers=list(self.answers),
            recording=self.recording,
            dropped=self.dropped,
            **_clean(fields),
        )
