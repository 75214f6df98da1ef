"""A seeded generator of corrupted (and a few odd but valid) Standard MIDI Files.

``cases(seed)`` starts from real and synthetic files, takes each apart into raw events, and
breaks it in one way each time: cut short, wrong chunk or header lengths, bogus running status,
stray data bytes, delta times too big or too long, meta and sysex lengths past the end, meta
events mido cannot decode, system bytes that do not belong in a file, absurd notes, no notes,
0 or 65,535 tracks, unknown formats and divisions, random bytes, bit flips. The same seed gives
the same files.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mido

from tests.conftest import DATA, write_expressive_midi

Event = tuple[bytes, bytes]  # (delta time as written, the event's bytes as written)


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def ev(delta: int, body: bytes) -> Event:
    return vlq(delta), body


def meta(kind: int, data: bytes, delta: int = 0) -> Event:
    return ev(delta, bytes([0xFF, kind]) + vlq(len(data)) + data)


NOTE = [ev(0, b"\x90\x3c\x50"), ev(480, b"\x80\x3c\x00")]
EOT = meta(0x2F, b"")


@dataclass
class Smf:
    """A MIDI file as fields and raw events, so any of them can be written wrong."""

    tracks: list[list[Event]]
    fmt: int = 1
    division: int = 480
    ntracks: int | None = None  # None: the real count
    header_size: int = 6
    sizes: dict[int, int] = field(default_factory=dict)  # track index -> declared length

    def track_bytes(self, i: int) -> bytes:
        body = b"".join(d + e for d, e in self.tracks[i])
        return b"MTrk" + struct.pack(">L", self.sizes.get(i, len(body))) + body

    def to_bytes(self) -> bytes:
        ntracks = len(self.tracks) if self.ntracks is None else self.ntracks
        fields = struct.pack(">HHH", self.fmt, ntracks, self.division)
        head = b"MThd" + struct.pack(">L", self.header_size)
        head += fields.ljust(self.header_size, b"\0")[: self.header_size]
        return head + b"".join(self.track_bytes(i) for i in range(len(self.tracks)))

    def copy(self) -> Smf:
        return Smf([list(t) for t in self.tracks], self.fmt, self.division)


def from_mido(mid: mido.MidiFile) -> Smf:
    tracks = []
    for track in mid.tracks:
        events = []
        for msg in track:
            if msg.type == "sysex":
                body = b"\xf0" + vlq(len(msg.data) + 1) + bytes(msg.data) + b"\xf7"
            else:
                body = bytes(msg.bin())
            events.append(ev(msg.time, body))
        tracks.append(events)
    return Smf(tracks, mid.type, mid.ticks_per_beat)


def synthetic(tmp: Path) -> list[Smf]:
    """Small valid files of other shapes than the two real ones."""
    one = Smf([[*NOTE, EOT]], fmt=0, division=96)
    pedal = Smf(
        [[ev(0, b"\xb0\x40\x7f"), *NOTE, ev(0, b"\x40\x00"), meta(0x51, b"\x07\xa1\x20"), EOT]]
    )
    sysex = Smf([[ev(0, b"\xf0\x03\x7e\x09\xf7"), *NOTE, EOT], [meta(0x03, b"piano"), EOT]])
    return [one, pedal, sysex, from_mido(mido.MidiFile(write_expressive_midi(tmp / "e.mid")))]


def bases(tmp: Path) -> list[Smf]:
    real = [from_mido(mido.MidiFile(DATA / n)) for n in ("bwv66.6.mid", "palestrina-agnus-01.mid")]
    return real + synthetic(tmp)


# -- one corruption each --------------------------------------------------------------------
Rng = random.Random


def _event_at(rng: Rng, s: Smf) -> tuple[list[Event], int]:
    track = rng.choice([t for t in s.tracks if t] or [s.tracks[0]])
    return track, rng.randrange(len(track) + 1)


def truncated(rng: Rng, s: Smf) -> bytes:
    data = s.to_bytes()
    return data[: rng.randrange(len(data))]


def chunk_length(rng: Rng, s: Smf) -> bytes:
    i = rng.randrange(len(s.tracks))
    real = len(s.track_bytes(i)) - 8
    near = [0, 1, real - 1, real + 1, real - rng.randint(1, 50), real + rng.randint(2, 5000)]
    s.sizes[i] = rng.choice([*near, 0xFFFFFFFF, 0x7FFFFFFF, rng.getrandbits(32)]) % 2**32
    return s.to_bytes()


def header_length(rng: Rng, s: Smf) -> bytes:
    data = s.to_bytes()
    size = rng.choice([0, 1, 5, 7, 100, 2**31, 0xFFFFFFFF])
    return data[:4] + struct.pack(">L", size) + data[8:]


def track_count(rng: Rng, s: Smf) -> bytes:
    s.ntracks = rng.choice([0, 1, len(s.tracks) + 1, len(s.tracks) + 100, 32767, 32768, 65535])
    return s.to_bytes()


def file_format(rng: Rng, s: Smf) -> bytes:
    s.fmt = rng.choice([0, 2, 3, 255, 0x8000, 0xFFFF])
    return s.to_bytes()


def division(rng: Rng, s: Smf) -> bytes:
    s.division = rng.choice([0, 1, 3, 0x7FFF, 0x8000, 0xE728, 0xE250, 0xE350, 0xFFFF])
    return s.to_bytes()


def running_status(rng: Rng, s: Smf) -> bytes:
    """Data bytes where a status byte belongs: first in a track, after a sysex, or dropped."""
    way = rng.randrange(3)
    track = rng.choice(s.tracks)
    if way == 0:
        track.insert(0, ev(0, bytes([rng.randrange(0x80), rng.randrange(0x80)])))
    elif way == 1:
        at = rng.randrange(len(track) + 1)
        track[at:at] = [ev(0, b"\xf0\x01\xf7"), ev(0, b"\x3c\x40")]
    else:
        channel = [i for i, (_, e) in enumerate(track) if 0x80 <= e[0] < 0xF0]
        if channel:
            i = rng.choice(channel)
            track[i] = (track[i][0], track[i][1][1:])
        else:
            track.insert(0, ev(0, b"\x40\x40"))
    return s.to_bytes()


def stray_bytes(rng: Rng, s: Smf) -> bytes:
    track, at = _event_at(rng, s)
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
    track.insert(at, (b"", junk))
    return s.to_bytes()


def huge_delta(rng: Rng, s: Smf) -> bytes:
    """Delta times of 0x0FFFFFFF (valid, 4 bytes) or variable-length numbers of 5+ bytes."""
    track, at = _event_at(rng, s)
    if at < len(track):
        k = rng.choice([0, 0, 3, 4, 10, 1000])  # extra 0x80 bytes after a 4-byte maximum
        delta = vlq(0x0FFFFFFF) if k == 0 else b"\x8f" * (4 + k) + b"\x7f"
        track[at] = (delta, track[at][1])
    for i in rng.sample(range(len(track)), min(len(track), rng.randint(0, 20))):
        track[i] = (vlq(0x0FFFFFFF), track[i][1])
    return s.to_bytes()


def huge_length(rng: Rng, s: Smf) -> bytes:
    """A meta or sysex event that declares more data than its track (or any file) holds."""
    track, at = _event_at(rng, s)
    size = rng.choice([0x0FFFFFFF, 1_000_001, 2**21, rng.randint(10, 10_000)])
    head = rng.choice([b"\xff\x01", b"\xff\x7f", b"\xf0", b"\xf7"])
    track.insert(at, (b"\x00", head + vlq(size) + bytes(rng.randrange(0x80) for _ in range(8))))
    return s.to_bytes()


BAD_METAS = [
    (0x51, b""), (0x51, b"\x07"), (0x51, b"\x00\x00\x00"), (0x51, b"\x00\x00\x01"),
    (0x51, b"\xff\xff\xff"), (0x51, b"\x07\xa1\x20\x00\x00"),
    (0x58, b""), (0x58, b"\x04"), (0x58, b"\x00\x02\x18\x08"), (0x58, b"\x04\xff\x18\x08"),
    (0x58, b"\xff\x00\x00\x00"), (0x58, b"\x03\x40\x18\x08"),
    (0x59, b""), (0x59, b"\x64\x00"), (0x59, b"\x9c\x01"), (0x59, b"\x00\x05"), (0x59, b"\x01"),
    (0x54, b""), (0x54, b"\xe0\x00\x00\x00\x00"), (0x54, b"\xff\xff\xff\xff\xff"),
    (0x00, b"\x01"), (0x00, b"\x01\x02\x03"), (0x20, b""), (0x20, b"\xff"), (0x21, b""),
    (0x2F, b"\x01"), (0x03, bytes(range(256))), (0x05, b"\xff\xfe\x00"), (0x7F, b""),
    (0x60, b"\x01\x02"), (0xFF, b"\x00"),
]  # fmt: skip


def bad_meta(rng: Rng, s: Smf) -> bytes:
    track, at = _event_at(rng, s)
    for _ in range(rng.randint(1, 3)):
        track.insert(at, meta(*rng.choice(BAD_METAS)))
    return s.to_bytes()


def system_bytes(rng: Rng, s: Smf) -> bytes:
    track, at = _event_at(rng, s)
    status = rng.choice([0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF8, 0xF9, 0xFA, 0xFC, 0xFE])
    track.insert(at, ev(0, bytes([status]) + bytes(rng.randrange(0x80) for _ in range(2))))
    return s.to_bytes()


def absurd_notes(rng: Rng, s: Smf) -> bytes:
    """Notes that parse: data bytes over 127, pitch 0/127, velocity 0, a thousand at once."""
    track, at = _event_at(rng, s)
    way = rng.randrange(4)
    if way == 0:
        extra = [ev(0, bytes([0x90 | rng.randrange(16), 0xFF, 0xFF])), ev(10, b"\x80\xff\x00")]
    elif way == 1:
        extra = [ev(0, bytes([0x90, p, v])) for p in (0, 127) for v in (0, 1, 127)]
    elif way == 2:
        extra = [ev(0, bytes([0x90 | (i % 16), i % 128, 1 + i % 127])) for i in range(1000)]
    else:
        extra = [ev(rng.randrange(5000), bytes([0x80 | rng.randrange(16), rng.randrange(128), 0]))]
    track[at:at] = extra
    return s.to_bytes()


def no_notes(rng: Rng, s: Smf) -> bytes:
    """Well-formed files with nothing to continue."""
    way = rng.randrange(6)
    if way == 0:
        tracks = [[meta(0x51, b"\x07\xa1\x20"), meta(0x03, b"x"), EOT]]
    elif way == 1:
        tracks = [[ev(0, b"\xb0\x07\x64"), ev(10, b"\xc0\x05"), ev(10, b"\xe0\x00\x40"), EOT]]
    elif way == 2:
        tracks = [[ev(0, b"\x99\x24\x64"), ev(100, b"\x89\x24\x00"), EOT]]  # drums only
    elif way == 3:
        tracks = [[ev(0, b"\x80\x3c\x00"), ev(0, b"\x90\x3c\x00"), EOT]]  # offs only
    elif way == 4:
        tracks = [[EOT] for _ in range(rng.randint(1, 5))]
    else:
        tracks = [[] for _ in range(rng.randint(1, 5))]  # zero-length chunks
    return Smf(tracks, rng.choice([0, 1]), rng.choice([1, 96, 480])).to_bytes()


def alien_chunk(rng: Rng, s: Smf) -> bytes:
    """A chunk of an unknown type between tracks: the standard says readers skip it."""
    data = s.to_bytes()
    cut = 14 + sum(len(s.track_bytes(i)) for i in range(rng.randrange(len(s.tracks) + 1)))
    body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    kind = rng.choice([b"XFIH", b"MTrX", b"\0\0\0\0"])
    return data[:cut] + kind + struct.pack(">L", len(body)) + body + data[cut:]


def random_after_header(rng: Rng, s: Smf) -> bytes:
    head = s.to_bytes()[:14]
    tail = bytes(rng.randrange(256) for _ in range(rng.randint(0, 3000)))
    if rng.random() < 0.5:
        tail = b"MTrk" + struct.pack(">L", rng.choice([len(tail), rng.getrandbits(32)])) + tail
    return head + tail


def random_bytes(rng: Rng, s: Smf) -> bytes:
    data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 3000)))
    return rng.choice([b"", b"MThd", b"MThd\0\0\0\x06"]) + data


def bit_flips(rng: Rng, s: Smf) -> bytes:
    data = bytearray(s.to_bytes())
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def byte_edits(rng: Rng, s: Smf) -> bytes:
    data = bytearray(s.to_bytes())
    for _ in range(rng.randint(1, 16)):
        i, way = rng.randrange(len(data)), rng.randrange(3)
        if way == 0:
            data[i] = rng.randrange(256)
        elif way == 1:
            data.insert(i, rng.randrange(256))
        elif len(data) > 1:
            del data[i]
    return bytes(data)


def splice(rng: Rng, s: Smf) -> bytes:
    a = s.to_bytes()
    b = rng.choice([truncated, bit_flips, random_bytes])(rng, s.copy())
    return a[: rng.randrange(len(a))] + b[rng.randrange(len(b) + 1) :]


KINDS: dict[str, Callable[[Rng, Smf], bytes]] = {
    f.__name__: f
    for f in (
        truncated, chunk_length, header_length, track_count, file_format, division,
        running_status, stray_bytes, huge_delta, huge_length, bad_meta, system_bytes,
        absurd_notes, no_notes, alien_chunk, random_after_header, random_bytes, bit_flips,
        byte_edits, splice,
    )
}  # fmt: skip


def big_cases() -> Iterator[tuple[str, bytes]]:
    """One of each large file: too big, too many events, too many tracks, a 100 KB delta."""
    yield "empty", b""
    yield "header_only", Smf([]).to_bytes()[:14]
    yield "header_only", Smf([], ntracks=1).to_bytes()
    yield "too_big", Smf([[*NOTE, EOT]]).to_bytes() + bytes(16 * 2**20)
    events = [ev(0, b"\x90\x3c\x40")] + [ev(0, b"\x3c\x40")] * 1_000_000
    yield "too_many_events", Smf([events]).to_bytes()
    for n in (32766, 32767, 65535):  # the first leaves room for the continuation's track
        yield f"many_tracks_{n}", Smf([[*NOTE, EOT]] + [[EOT]] * (n - 1)).to_bytes()
    yield "huge_delta", Smf([[(b"\x80" * 100_000 + b"\x00", b"\x90\x3c\x40"), EOT]]).to_bytes()
    dense = [ev(1, bytes([0x90, 40 + i % 48, 64])) for i in range(20_000)]
    yield "dense", Smf([[*dense, ev(1, b"\xb0\x7b\x00"), EOT]]).to_bytes()


def cases(seed: int, n: int, tmp: Path) -> Iterator[tuple[str, bytes]]:
    """``n`` corrupted files (kind, bytes) made from ``seed``, then the big ones."""
    rng = random.Random(seed)
    sources = bases(tmp)
    names = sorted(KINDS)
    for _ in range(n):
        kind = rng.choice(names)
        yield kind, KINDS[kind](rng, rng.choice(sources).copy())
    yield from big_cases()
