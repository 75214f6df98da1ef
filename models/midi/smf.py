"""The structure of a Standard MIDI File, checked before mido parses it.

mido trusts the bytes it reads: a track chunk that declares the wrong length makes it read on
into the next chunk, a delta time written as a million 0x80 bytes costs it quadratic time, and a
file of a million tiny events costs it gigabytes. ``checked_smf`` walks the chunks and events
once, cheaply, and either says in one sentence what is wrong or returns bytes that mido parses in
bounded time and memory: every chunk inside the file, every event inside its track chunk, delta
times and lengths at most 4 bytes (as the standard says), no data byte without a status byte.
Chunks of unknown type are dropped, as the standard tells readers to do (mido would refuse them).
"""

from __future__ import annotations

import struct

MAX_BYTES = 16 * 2**20  # a long piano performance is well under 1 MB
MAX_EVENTS = 1_000_000  # mido holds about 600 bytes per event while reading
MAX_TRACKS = 32767  # mido writes the count as a signed 16-bit number

_DATA_BYTES = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}  # by status high nibble


class SmfError(ValueError):
    """Why some bytes are not a Standard MIDI File antiphon can read (one sentence)."""


def checked_smf(data: bytes) -> bytes:
    """``data`` with only its header and track chunks, once they are known to be well formed."""
    if len(data) > MAX_BYTES:
        raise SmfError(f"more than the {MAX_BYTES} bytes antiphon reads")
    if data[:4] != b"MThd":
        raise SmfError("no MThd header (not a MIDI file)" if data else "the file is empty")
    if len(data) < 14:
        raise SmfError(f"the header is cut off after {len(data)} bytes")
    size = int.from_bytes(data[4:8], "big")
    fmt, ntracks, division = struct.unpack(">HHH", data[8:14])
    if size < 6 or 8 + size > len(data):
        raise SmfError(f"the header chunk declares {size} bytes")
    if fmt > 2:
        raise SmfError(f"unknown format {fmt} (a MIDI file is format 0, 1 or 2)")
    if division & 0x8000:
        raise SmfError("its time is in SMPTE frames, not ticks per beat (re-save it in beats)")
    if division == 0:
        raise SmfError("it declares 0 ticks per beat")
    if ntracks == 0:
        raise SmfError("it declares no tracks")
    if ntracks > MAX_TRACKS:
        raise SmfError(f"it declares {ntracks} tracks, more than the {MAX_TRACKS} antiphon reads")
    tracks: list[bytes] = []
    events = 0
    pos = 8 + size
    while len(tracks) < ntracks:
        if pos + 8 > len(data):
            raise SmfError(f"it declares {ntracks} tracks but ends after {len(tracks)} (cut off?)")
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        end = pos + 8 + size
        if end > len(data):
            raise SmfError(
                f"the chunk at byte {pos} declares {size} bytes but {len(data) - pos - 8} follow"
                " (cut off?)"
            )
        if kind == b"MTrk":
            try:
                events += _count_events(data, pos + 8, end)
            except SmfError as exc:
                raise SmfError(f"track {len(tracks) + 1}: {exc}") from None
            if events > MAX_EVENTS:
                raise SmfError(f"more than the {MAX_EVENTS} events antiphon reads")
            tracks.append(data[pos:end])
        pos = end
    return struct.pack(">4sLHHH", b"MThd", 6, fmt, ntracks, division) + b"".join(tracks)


def _count_events(data: bytes, i: int, end: int) -> int:
    """The number of events in the track data ``data[i:end]``; raises if any is malformed."""
    running = None  # the status that bare data bytes continue (running status)
    n = 0
    while i < end:
        start = i
        i = _length(data, i, end)[1]  # the delta time
        if i >= end:
            raise SmfError(f"a delta time at byte {i} has no event after it")
        status = data[i]
        if status < 0x80:
            if running is None:
                raise SmfError(f"data byte 0x{status:02x} at byte {i} has no status byte")
            i += _DATA_BYTES[running >> 4]
        elif status < 0xF0:
            running = status
            i += 1 + _DATA_BYTES[status >> 4]
        elif status == 0xFF:  # meta: type, length, data; running status carries over (as in mido)
            size, i = _length(data, i + 2, end)
            i += size
        elif status in (0xF0, 0xF7):  # sysex: length, data; it ends running status
            size, i = _length(data, i + 1, end)
            i += size
            running = None
        else:
            raise SmfError(f"status byte 0x{status:02x} at byte {i} does not belong in a file")
        if i > end:
            raise SmfError(f"the event at byte {start} runs past the end of its track")
        n += 1
    return n


def _length(data: bytes, i: int, end: int) -> tuple[int, int]:
    """A variable-length number at ``data[i]`` (at most 4 bytes) and the index after it."""
    value = 0
    for j in range(i, min(i + 4, end)):
        value = (value << 7) | (data[j] & 0x7F)
        if data[j] < 0x80:
            return value, j + 1
    if i + 4 <= end:
        raise SmfError(f"a variable-length number at byte {i} is longer than 4 bytes")
    raise SmfError(f"the track ends inside a variable-length number at byte {i}")
