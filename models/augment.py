"""Augmentation of token windows beyond transposition: dynamics and tempo.

A pianist plays louder or softer than a score's marked dynamics, and at a tempo the daemon
can only guess (``--bpm``, 120 by default): the beats it hears are the score's beats
stretched. The corpus's MIDI has one velocity per dynamic mark and the notated rhythm, so
both are shown to the model varied:

- ``velocity_tables``: id -> id moving every ``Velocity_`` token the same number of bins
  (clamped at the softest and loudest), nothing else changed.
- ``TempoStretch``: every run of ``TimeShift_`` tokens of a MIDI-like window scaled by one
  factor and written again with the vocabulary's time shifts (largest first, as miditok
  writes them); the notes, velocities and their order are untouched. Only MIDI-like
  tokens have all timing in time shifts; REMI and TSD are refused (``stretch_for``).

Both work on token ids, per window, so they cost nothing at tokenization and the cache
stays one copy of the corpus.
"""

from __future__ import annotations

import numpy as np

from antiphon.errors import UserError


def velocity_tables(vocab: list[str], max_bins: int) -> dict[int, np.ndarray]:
    """For each shift k in [-max_bins, max_bins]: id -> id of the velocity k bins away."""
    ids = np.arange(len(vocab), dtype=np.int32)
    levels = sorted(
        ((int(t.split("_")[1]), i) for i, t in enumerate(vocab) if t.startswith("Velocity_")),
    )
    order = [i for _, i in levels]
    tables = {}
    for k in range(-max_bins, max_bins + 1):
        table = ids.copy()
        for rank, i in enumerate(order):
            table[i] = order[min(len(order) - 1, max(0, rank + k))]
        tables[k] = table
    return tables


def _shift_ticks(token: str, tpq: int) -> int:
    """Ticks (``tpq`` per beat) of a miditok ``TimeShift_beat.pos.res`` token."""
    beat, pos, res = (int(x) for x in token.split("_", 1)[1].split("."))
    return beat * tpq + pos * tpq // res


class TempoStretch:
    """Time shifts of MIDI-like token windows scaled by a factor (see the module)."""

    def __init__(self, vocab: list[str], tpq: int) -> None:
        self.ticks = np.zeros(len(vocab), dtype=np.int64)
        for i, t in enumerate(vocab):
            if t.startswith("TimeShift_"):
                self.ticks[i] = _shift_ticks(t, tpq)
        self.is_shift = self.ticks > 0
        shifts = sorted(
            ((int(self.ticks[i]), i) for i in np.flatnonzero(self.is_shift)), reverse=True
        )
        self._values = [v for v, _ in shifts]
        self._ids = [i for _, i in shifts]
        if not self._values or self._values[-1] != 1:
            raise ValueError("the vocabulary has no one-tick time shift to write any length")

    def encode_ticks(self, ticks: int) -> list[int]:
        """Time-shift ids summing to ``ticks``, largest first."""
        out = []
        for value, i in zip(self._values, self._ids, strict=True):
            while ticks >= value:
                out.append(i)
                ticks -= value
        return out

    def apply(self, tokens: np.ndarray, factor: float) -> np.ndarray:
        """``tokens`` with each run of time shifts scaled by ``factor`` (to the nearest tick;
        a run that rounds to nothing leaves its neighbours at one time)."""
        out: list[int] = []
        run = 0
        for t in tokens.tolist():
            if self.is_shift[t]:
                run += int(self.ticks[t])
                continue
            if run:
                out += self.encode_ticks(round(run * factor))
                run = 0
            out.append(t)
        if run:
            out += self.encode_ticks(round(run * factor))
        return np.asarray(out, dtype=np.int32)


def stretch_for(kind: str, vocab: list[str], tpq: int, tempo: float) -> TempoStretch | None:
    """The tempo augmentation for ``TrainConfig.tempo`` (0: none), or one clear error."""
    if tempo < 0:
        raise UserError(f"--tempo must be 0 or more (a fraction, e.g. 0.2), got {tempo}")
    if tempo == 0:
        return None
    if kind != "MIDILike":
        raise UserError(
            f"--tempo works on MIDI-like tokens only ({kind} writes time in bars and "
            "positions); use --tokenizer midilike or --tempo 0"
        )
    return TempoStretch(vocab, tpq)
