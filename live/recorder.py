"""``--record FILE.mid``: the session as a MIDI file, the player and antiphon on two tracks.

Messages are kept with their arrival (or send) times. While the daemon runs, a saver thread
keeps FILE current: every ``SAVE_INTERVAL`` seconds when something was played, and soon
after every answer, each time an atomic rewrite (``antiphon.atomic``), so a crash or a
``kill -9`` leaves a readable file holding all but the last moments of the session. A key
still held at the moment of writing gets its note-off there, so every note is in the file.
A clean exit writes the final, complete file.

The saver never holds up the input thread or the scheduler: ``add`` only appends under a
short lock; the saver takes the new events under that lock and encodes outside it, and only
the new ones (the encoded tracks grow in memory), so an hour-long session costs no more per
save than a short one. A disk that fails is logged once; the daemon keeps playing and the
saver keeps trying.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import mido

from antiphon.atomic import atomic_file
from antiphon.errors import UserError

log = logging.getLogger(__name__)

TICKS_PER_BEAT = 480
TRACKS = ("player", "antiphon")
SAVE_INTERVAL = 2.0  # seconds: at most this much of a session is lost to a crash
MIN_GAP = 0.25  # seconds between two saves, however many answers end in between


class Recorder:
    def __init__(self, bpm: float = 120.0) -> None:
        self.bpm = bpm
        self._events: dict[str, list[tuple[float, list[int]]]] = {name: [] for name in TRACKS}
        self._lock = threading.Lock()  # the event lists (input thread vs saver)
        self._encode_lock = threading.Lock()  # the encoded tracks (saver vs final write)
        self._tracks = {name: _EncodedTrack() for name in TRACKS}
        self._note_ons = dict.fromkeys(TRACKS, 0)
        self._origin: float | None = None
        self.version = 0  # events added so far: a saver writes only when it moved
        self._saver: _Saver | None = None

    def add(self, track: str, t: float, data: list[int]) -> None:
        if _channel_message(data):  # channel messages only: clock, sysex stay out
            with self._lock:
                self._events[track].append((t, list(data)))
                self.version += 1
                self._note_ons[track] += data[0] & 0xF0 == 0x90 and data[2] > 0

    def notes(self, track: str) -> int:
        with self._lock:
            return self._note_ons[track]

    def _pieces(self, end: float) -> list[bytes | memoryview]:
        """The session until ``end`` as a standard MIDI file (type 1: tempo, then a track per
        source), keys and pedal still down released at ``end``, in pieces: each track's
        encoded body is a view, not a copy. Call with ``_encode_lock`` held (the bodies must
        not grow while the pieces are read)."""
        with self._lock:
            # What is encoded is not kept twice: an hour's session (floods included) holds a
            # few bytes a message, not a Python list each.
            new, self._events = self._events, {name: [] for name in TRACKS}
        if self._origin is None:
            starts = [t for v in new.values() for t, _ in v]
            self._origin = min(starts, default=None)
        scale = self.bpm / 60.0 * TICKS_PER_BEAT
        tempo = _tempo_track(self.bpm)
        pieces: list[bytes | memoryview] = [
            b"MThd" + struct.pack(">IHHH", 6, 1, 1 + len(TRACKS), TICKS_PER_BEAT),
            b"MTrk" + struct.pack(">I", len(tempo)) + tempo,
        ]
        for name in TRACKS:
            track = self._tracks[name]
            if self._origin is not None:
                track.extend(new[name], self._origin, scale)
            end_tick = 0 if self._origin is None else round((end - self._origin) * scale)
            pieces += track.chunk(name, end_tick)
        return pieces

    def to_bytes(self, end: float) -> bytes:
        with self._encode_lock:
            pieces = self._pieces(end)
            try:
                return b"".join(pieces)
            finally:
                _release(pieces)

    def to_midi(self, end: float) -> mido.MidiFile:
        return mido.MidiFile(file=io.BytesIO(self.to_bytes(end)))

    def write(self, path: str | Path, end: float) -> Path:
        """The complete recording, atomically; a failure is one line naming the file.

        Streamed from the encoded tracks: the saver rewrites the file every few seconds of a
        long session, and a whole-file buffer each time (a few MB, allocated and freed over
        and over) grew the daemon's heap by 22 MB in a 30-minute soak, freed memory that
        glibc could not hand back."""
        with self._encode_lock:
            pieces = self._pieces(end)
            try:
                with atomic_file(path, "wb", what="recording") as f:
                    for piece in pieces:
                        f.write(piece)
            finally:
                _release(pieces)  # a body with a view on it could not grow
        return Path(path)

    # -- keeping the file current while the daemon runs ----------------------------------
    def keep_saved(self, path: str | Path, now: Callable[[], float]) -> None:
        """Start the saver thread that keeps ``path`` current (see the module docstring)."""
        self._saver = _Saver(self, Path(path), now)
        self._saver.start()

    def answered(self) -> None:
        """An answer was made: save soon (any thread; never blocks)."""
        if self._saver is not None:
            self._saver.wake.set()

    def stop_saving(self) -> None:
        """Stop the saver thread and wait for it (its last save is complete or not begun)."""
        if self._saver is not None:
            self._saver.stop()
            self._saver = None


class _Saver:
    """One thread, one role: rewrite the recording when it changed; warn once if it can't."""

    def __init__(self, recorder: Recorder, path: Path, now: Callable[[], float]) -> None:
        self.recorder, self.path, self.now = recorder, path, now
        self.wake = threading.Event()  # an answer: save now rather than at the next interval
        self.stopping = threading.Event()
        self.saved_version = -1
        self.failing = False
        self.thread = threading.Thread(target=self._run, name="antiphon-recorder", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stopping.is_set():
            if self.recorder.version != self.saved_version:
                self._save()
            if self.stopping.wait(MIN_GAP):
                return
            self.wake.wait(SAVE_INTERVAL - MIN_GAP)
            self.wake.clear()

    def _save(self) -> None:
        version = self.recorder.version
        try:
            self.recorder.write(self.path, self.now())
        except (UserError, OSError) as exc:
            if not self.failing:
                log.warning("%s; still playing, and trying again every %g s", exc, SAVE_INTERVAL)
                self.failing = True
            return
        except Exception:  # a bug here must not end the session; the final write retries
            log.exception("saving the recording %s failed", self.path)
            return
        if self.failing:
            log.warning("%s: the recording is being saved again", self.path)
            self.failing = False
        self.saved_version = version


class _EncodedTrack:
    """A track's events encoded so far, in order, plus the ledger of what is still down."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.count = 0  # events taken from the recorder
        self.last = 0  # tick of the last encoded event
        self.down: dict[tuple[int, int], int] = {}
        self.pedal: set[int] = set()

    def extend(self, events: list[tuple[float, list[int]]], origin: float, scale: float) -> None:
        self.count += len(events)
        for t, data in sorted(events, key=lambda e: e[0]):
            # Never before what is already written (an event that arrived late keeps order).
            tick = max(self.last, round((t - origin) * scale))
            self.body += _varlen(tick - self.last) + bytes(data)
            self.last = tick
            self._ledger(data)

    def chunk(self, name: str, end_tick: int) -> list[bytes | memoryview]:
        """The track's chunk in pieces: its header and name, the events (a view of the
        encoded body), note-offs (and pedal up) for what is still down at ``end_tick``,
        end of track."""
        named = name.encode()
        head = b"\x00\xff\x03" + _varlen(len(named)) + named
        tail = bytearray()
        delta = max(0, end_tick - self.last)
        for (ch, pitch), n in self.down.items():
            for _ in range(n):
                tail += _varlen(delta) + bytes([0x80 | ch, pitch, 0])
                delta = 0
        for ch in sorted(self.pedal):
            tail += _varlen(delta) + bytes([0xB0 | ch, 64, 0])
            delta = 0
        tail += b"\x00\xff\x2f\x00"
        size = len(head) + len(self.body) + len(tail)
        return [b"MTrk" + struct.pack(">I", size) + head, memoryview(self.body), bytes(tail)]

    def _ledger(self, d: list[int]) -> None:
        kind, ch = d[0] & 0xF0, d[0] & 0x0F
        if kind == 0x90 and d[2] > 0:
            self.down[(ch, d[1])] = self.down.get((ch, d[1]), 0) + 1
        elif kind in (0x80, 0x90) and self.down.get((ch, d[1])):
            self.down[(ch, d[1])] -= 1
            if not self.down[(ch, d[1])]:
                del self.down[(ch, d[1])]
        elif kind == 0xB0 and d[1] == 64:
            (self.pedal.add if d[2] >= 64 else self.pedal.discard)(ch)


def _channel_message(data: list[int]) -> bool:
    if not data or not 0x80 <= data[0] < 0xF0:
        return False
    size = 2 if data[0] & 0xF0 in (0xC0, 0xD0) else 3
    return len(data) == size and all(0 <= b < 0x80 for b in data[1:])


def _tempo_track(bpm: float) -> bytes:
    tempo = mido.bpm2tempo(bpm)
    return b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big") + b"\x00\xff\x2f\x00"


def _release(pieces: list[bytes | memoryview]) -> None:
    for piece in pieces:
        if isinstance(piece, memoryview):
            piece.release()


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))
