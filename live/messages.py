"""Raw MIDI bytes from a port -> the few events the daemon acts on; anything else is dropped.

Input ports carry whatever a device or another program sends: running-status fragments,
stray data bytes, undefined status bytes, sysex, truncated messages. None of it may stop
the daemon, so parsing never raises: it returns ``None`` for what it does not understand.
"""

from __future__ import annotations

from dataclasses import dataclass

NOTE_OFF, NOTE_ON, CONTROL = 0x80, 0x90, 0xB0
CLOCK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC
ALL_NOTES_OFF = (120, 123)  # controllers: All Sound Off, All Notes Off
REALTIME = {CLOCK: "clock", START: "start", CONTINUE: "continue", STOP: "stop"}


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # "on" | "off" | "cc" | "clock" | "start" | "continue" | "stop"
    channel: int = 0  # 0-15
    a: int = 0  # pitch or controller
    b: int = 0  # velocity or value


def parse(data: list[int] | tuple[int, ...] | bytes) -> Message | None:
    if not data:
        return None
    status = data[0]
    if not isinstance(status, int) or status < 0x80 or status > 0xFF:
        return None  # a stray data byte (or garbage)
    if status >= 0xF0:
        kind = REALTIME.get(status)
        return Message(kind) if kind is not None and len(data) == 1 else None
    kind, channel = status & 0xF0, status & 0x0F
    if kind not in (NOTE_OFF, NOTE_ON, CONTROL) or len(data) != 3:
        return None
    a, b = data[1], data[2]
    if not (isinstance(a, int) and isinstance(b, int) and 0 <= a < 0x80 and 0 <= b < 0x80):
        return None
    if kind == CONTROL:
        return Message("cc", channel, a, b)
    if kind == NOTE_ON and b > 0:
        return Message("on", channel, a, b)
    return Message("off", channel, a, b)  # note-off, or note-on with velocity 0


def is_channel_message(data: list[int] | tuple[int, ...] | bytes) -> bool:
    """A complete, well-formed channel message (notes, controllers, pitch bend, program
    change, aftertouch): what a recording can hold."""
    if not data or not isinstance(data[0], int) or not 0x80 <= data[0] < 0xF0:
        return False
    size = 2 if 0xC0 <= data[0] < 0xE0 else 3
    return len(data) == size and all(isinstance(b, int) and 0 <= b < 0x80 for b in data[1:])
