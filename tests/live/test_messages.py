from __future__ import annotations

import pytest

from antiphon.live.messages import Message, parse


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([0x90, 60, 100], Message("on", 0, 60, 100)),
        ([0x9F, 60, 1], Message("on", 15, 60, 1)),
        ([0x90, 60, 0], Message("off", 0, 60, 0)),  # velocity-0 note-on is a note-off
        ([0x85, 61, 64], Message("off", 5, 61, 64)),
        ([0xB0, 64, 127], Message("cc", 0, 64, 127)),
        ([0xF8], Message("clock")),
        ([0xFA], Message("start")),
        ([0xFB], Message("continue")),
        ([0xFC], Message("stop")),
        (bytes([0x90, 60, 100]), Message("on", 0, 60, 100)),
    ],
)
def test_understood_messages(data, expected) -> None:
    assert parse(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        [],
        [0x45],  # stray data byte
        [0x45, 0x12, 0x7F],
        [0xF4],  # undefined status bytes
        [0xF5, 1],
        [0xFD],
        [0xF0, 1, 2, 0xF7],  # sysex
        [0x90, 60],  # truncated
        [0x90, 60, 100, 1],  # too long
        [0x95, 0x90, 0x80],  # status bytes as data
        [0x90, 200, 300],  # out of range
        [0xE0, 0, 64],  # pitch bend: not acted on
        [0xC0, 5],  # program change
        [0xF8, 0],  # a realtime byte with trailing garbage
        [-1, 2, 3],
    ],
)
def test_everything_else_is_dropped_without_raising(data) -> None:
    assert parse(data) is None
