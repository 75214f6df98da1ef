"""Piano-roll frames: the polyphonic benchmark files, and frames of MIDI on a model's grid.

Two sources of the same thing, a piece as a binary roll ``(T, 88)`` (key 0 = A0 = MIDI 21):

- the benchmark JSON format of ``shared/data/polyphonic`` (``{"train": [...], "valid": [...]}``,
  a piece a list of frames, a frame the sorted MIDI pitches sounding in it), any split name;
- MIDI files or live input, read by ``notes`` onto the model's grid and cut into frames
  of ``frame_ticks`` ticks by ``FrameCursor`` — the very same code the live voice runs, so a
  file played into the daemon becomes exactly the frames it was trained on.

A key belongs to every frame its note overlaps (a note shorter than a frame still fills
one); the sustain pedal is ignored, as the benchmarks' rolls hold keys, not resonance. A piece
starts at the frame of its first note: leading silence is not music to predict.

No torch here: the daemon imports ``FrameCursor``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from antiphon.errors import UserError
from antiphon.models.midi.notes import Grid, TickEvents, file_ticks

PITCH_LO = 21
N_KEYS = 88


# -- the benchmark format --------------------------------------------------------------------
def load_benchmark(path: str | Path) -> dict[str, list[list[list[int]]]]:
    """Every split of a benchmark file (keys whose value is a list of pieces)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such benchmark file")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable JSON benchmark file ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object of splits, e.g. {{'train': [...]}}")
    splits = {k: v for k, v in data.items() if isinstance(v, list)}
    if not splits:
        raise UserError(f"{path}: no splits (lists of pieces) in this file")
    return splits


def benchmark_split(
    path: str | Path, split: str, pitch_lo: int = PITCH_LO, n_keys: int = N_KEYS
) -> list[np.ndarray]:
    """The pieces of one split as rolls ``(T, n_keys)`` uint8."""
    splits = load_benchmark(path)
    if split not in splits:
        raise UserError(f"{path}: no split {split!r}; it has: {', '.join(sorted(splits))}")
    try:
        return [to_roll(piece, pitch_lo, n_keys) for piece in splits[split]]
    except (TypeError, ValueError) as exc:
        msg = f"{path}: split {split!r} is not pieces of frames of pitches ({exc})"
        raise UserError(msg) from None


def to_roll(piece: list[list[int]], pitch_lo: int = PITCH_LO, n_keys: int = N_KEYS) -> np.ndarray:
    roll = np.zeros((len(piece), n_keys), dtype=np.uint8)
    for t, frame in enumerate(piece):
        keys = np.asarray(frame, dtype=np.int64) - pitch_lo
        if keys.size and (keys.min() < 0 or keys.max() >= n_keys):
            raise ValueError(f"pitch outside {pitch_lo}..{pitch_lo + n_keys - 1} in frame {t}")
        roll[t, keys] = 1
    return roll


def from_roll(roll: np.ndarray, pitch_lo: int = PITCH_LO) -> list[list[int]]:
    """A roll back in the benchmark format (for writing benchmark-style files)."""
    return [[int(k) + pitch_lo for k in np.flatnonzero(frame)] for frame in roll]


# -- frames of MIDI ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameCursor:
    """Cuts closed ticks into frames of ``frame_ticks`` ticks. A value: ``hear`` and
    ``close_before`` return a new cursor (the live voice forks and rolls back states)."""

    frame_ticks: int
    pitch_lo: int = PITCH_LO
    n_keys: int = N_KEYS
    index: int | None = None  # the open frame; None until the first note
    touched: frozenset[int] = field(default_factory=frozenset)  # keys that stopped in it
    sounding: frozenset[int] = field(default_factory=frozenset)  # keys down now

    def hear(
        self, ticks: Iterable[TickEvents], max_frames: int | None = None
    ) -> tuple[FrameCursor, list[frozenset[int]]]:
        """Take closed ticks in; returns the cursor and the frames they completed (a gap
        between events longer than ``max_frames`` is cut, see ``close_before``)."""
        cur, frames = self, []
        for ev in ticks:
            k = ev.tick // self.frame_ticks
            if cur.index is None:
                if not ev.ons:
                    continue
                cur = replace(cur, index=k)
            cur, closed = cur.close_before(k, max_frames)
            frames += closed
            touched, sounding = set(cur.touched), set(cur.sounding)
            for n in ev.offs:
                key = n.pitch - self.pitch_lo
                if key in sounding and ev.tick > k * self.frame_ticks:
                    touched.add(key)  # it sounded in [frame start, tick)
                sounding.discard(key)
            for n in ev.ons:
                if 0 <= n.pitch - self.pitch_lo < self.n_keys:
                    sounding.add(n.pitch - self.pitch_lo)
            cur = replace(cur, touched=frozenset(touched), sounding=frozenset(sounding))
        return cur, frames

    def close_before(
        self, index: int, max_frames: int | None = None
    ) -> tuple[FrameCursor, list[frozenset[int]]]:
        """Complete every frame before ``index`` (nothing else happens until then). With
        ``max_frames``, a longer stretch is cut to that many frames: the keys held through
        it, repeated, say nothing new."""
        if self.index is None or index <= self.index:
            return self, []
        n = index - self.index
        if max_frames is not None:
            n = min(n, max(max_frames, 1))
        frames = [self.touched | self.sounding] + [self.sounding] * (n - 1)
        return replace(self, index=index, touched=frozenset()), frames

    def finish(self) -> list[frozenset[int]]:
        """The open frame, if anything sounded in it (the end of a file)."""
        if self.index is None or not (self.touched or self.sounding):
            return []
        return self.close_before(self.index + 1)[1]


def frames_to_roll(frames: list[frozenset[int]], n_keys: int = N_KEYS) -> np.ndarray:
    roll = np.zeros((len(frames), n_keys), dtype=np.uint8)
    for t, keys in enumerate(frames):
        roll[t, list(keys)] = 1
    return roll


def file_roll(
    path: str | Path, grid: Grid, frame_ticks: int, pitch_lo: int = PITCH_LO, n_keys: int = N_KEYS
) -> np.ndarray:
    cursor, frames = FrameCursor(frame_ticks, pitch_lo, n_keys).hear(file_ticks(path, grid))
    return frames_to_roll(frames + cursor.finish(), n_keys)
