"""The structure check that runs before mido parses a MIDI file."""

from __future__ import annotations

import struct

import pytest

from antiphon.models.midi.smf import SmfError, checked_smf


def test_a_real_file_passes_unchanged(chorale) -> None:
    data = chorale.read_bytes()
    assert checked_smf(data) == data


def test_chunks_of_unknown_type_are_dropped(chorale) -> None:
    data = chorale.read_bytes()
    alien = b"XFIH" + struct.pack(">L", 3) + b"abc"
    assert checked_smf(data[:14] + alien + data[14:]) == data


def test_a_track_must_hold_whole_events(chorale) -> None:
    track = b"\x00\x90\x3c\x40\x00\x3c"  # the second note-on lacks its velocity
    data = chorale.read_bytes()[:14] + b"MTrk" + struct.pack(">L", len(track)) + track
    data = data[:10] + b"\x00\x01" + data[12:]  # one track
    with pytest.raises(SmfError, match="track 1: the event at byte 26 runs past the end"):
        checked_smf(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"RIFF" + bytes(20), "no MThd"),
        (b"MThd\0\0\0\x06\0\x01\0\x01\xe7\x28", "SMPTE"),
        (b"MThd\0\0\0\x06\0\x01\xff\xff\x01\xe0", "65535 tracks"),
        (b"MThd\0\0\0\x06\0\x01\0\x01\x01\xe0MTrk\xff\xff\xff\xff", "declares 4294967295"),
        (b"MThd\0\0\0\x06\0\0\0\x01\x01\xe0MTrk\0\x01\x86\xa4" + b"\x80" * 100_000 + b"\0\xff/\0",
         "longer than 4 bytes"),
    ],
)  # fmt: skip
def test_what_is_wrong_is_said_in_one_line(data: bytes, why: str) -> None:
    with pytest.raises(SmfError, match=why) as err:
        checked_smf(data)
    assert "\n" not in str(err.value)
