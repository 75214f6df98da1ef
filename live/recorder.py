"""``--record FILE.mid``: the session as a MIDI file, the player and antiphon on two tracks.

Messages are kept with their arrival (or send) times and written on exit; a key the player
still holds at exit gets its note-off there, so every note played is in the file.
"""

from __future__ import annotations

import threading
from pathlib import Path

import mido

from antiphon.errors import UserError

TICKS_PER_BEAT = 480
TRACKS = ("player", "antiphon")


class Recorder:
    def __init__(self, bpm: float = 120.0) -> None:
        self.bpm = bpm
        self._events: dict[str, list[tuple[float, list[int]]]] = {name: [] for name in TRACKS}
        self._lock = threading.Lock()

    def add(self, track: str, t: float, data: list[int]) -> None:
        if data and 0x80 <= data[0] < 0xF0:  # channel messages only: clock, sysex stay out
            with self._lock:
                self._events[track].append((t, list(data)))

    def notes(self, track: str) -> int:
        with self._lock:
            return sum(1 for _, d in self._events[track] if d[0] & 0xF0 == 0x90 and d[2] > 0)

    def to_midi(self, end: float) -> mido.MidiFile:
        with self._lock:
            events = {k: list(v) for k, v in self._events.items()}
        starts = [t for v in events.values() for t, _ in v]
        origin = min(starts, default=end)
        mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
        meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(self.bpm))])
        mid.tracks.append(meta)
        for name in TRACKS:
            timed = events[name] + [(end, d) for d in _hanging(events[name])]
            track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
            last = 0
            for t, data in sorted(timed, key=lambda e: e[0]):
                tick = max(last, round((t - origin) * self.bpm / 60.0 * TICKS_PER_BEAT))
                track.append(mido.Message.from_bytes(data, time=tick - last))
                last = tick
            mid.tracks.append(track)
        return mid

    def write(self, path: str | Path, end: float) -> Path:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.to_midi(end).save(path)
        except OSError as exc:
            raise UserError(f"{path}: cannot write the recording ({exc.strerror or exc})") from None
        return path


def _hanging(events: list[tuple[float, list[int]]]) -> list[list[int]]:
    """Note-offs for notes (and a pedal) still down at the end of the recording."""
    down: dict[tuple[int, int], int] = {}
    pedal: set[int] = set()
    for _, d in events:
        kind, ch = d[0] & 0xF0, d[0] & 0x0F
        if kind == 0x90 and d[2] > 0:
            down[(ch, d[1])] = down.get((ch, d[1]), 0) + 1
        elif kind in (0x80, 0x90) and down.get((ch, d[1])):
            down[(ch, d[1])] -= 1
        elif kind == 0xB0 and d[1] == 64:
            (pedal.add if d[2] >= 64 else pedal.discard)(ch)
    offs = [[0x80 | ch, p, 0] for (ch, p), n in down.items() for _ in range(n)]
    return offs + [[0xB0 | ch, 64, 0] for ch in sorted(pedal)]
