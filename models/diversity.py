"""Mode collapse, measured: how different N generated samples are from one another, computed
the same way for N pieces of the training data so the two figures are compared.

A sample is a binary piano roll (steps × keys) on a sixteenth-note grid (``roll_of_notes``
rasterises notes; a held note fills its steps). Two numbers per set (``Diversity``):

- ``distinct_bars``: distinct bars (``steps_per_bar`` steps each, compared exactly) over the
  set's bars — 1.0 when every bar differs, 1/n when one bar is repeated everywhere (a
  collapsed GAN plays the same bar whatever its noise);
- ``mean_distance``: the mean, over all pairs of samples, of the Jaccard distance between
  their sounding cells (1 - shared / either; 0 for two equal samples, 1 for two that never
  sound a key at the same step). Jaccard rather than a plain Hamming fraction because rolls
  are sparse: a Hamming fraction of two different melodies is a few percent either way.

Only numpy: training, ``antiphon eval`` and tests share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

STEPS_PER_BAR = 16  # sixteenth notes in a 4/4 bar


@dataclass(frozen=True)
class Diversity:
    samples: int
    bars: int
    distinct_bars: float  # distinct bars / bars
    mean_distance: float  # mean pairwise Jaccard distance between samples

    def to_dict(self) -> dict:
        return asdict(self)


def roll_of_notes(
    notes: Iterable[tuple[int, int, int]],
    steps: int,
    step_ticks: int,
    pitch_lo: int = 0,
    n_keys: int = 128,
) -> np.ndarray:
    """(steps, n_keys) bool roll of (start tick, end tick, pitch) notes, ``step_ticks`` a
    step; a note sounds on every step it overlaps (at least its onset step). Pitches outside
    the keys are left out."""
    roll = np.zeros((steps, n_keys), dtype=bool)
    for start, end, pitch in notes:
        k = pitch - pitch_lo
        if not 0 <= k < n_keys:
            continue
        a = start // step_ticks
        b = max(a + 1, -(-end // step_ticks))
        if a < steps:
            roll[a : min(b, steps), k] = True
    return roll


def distinct_bars(rolls: np.ndarray, steps_per_bar: int = STEPS_PER_BAR) -> tuple[float, int]:
    """(distinct bars / bars, number of bars)."""
    n, steps, keys = rolls.shape
    per = steps // steps_per_bar
    if per == 0 or n == 0:
        return float("nan"), 0
    bars = rolls[:, : per * steps_per_bar].reshape(n * per, steps_per_bar * keys)
    return len(np.unique(bars, axis=0)) / len(bars), n * per


def mean_distance(rolls: np.ndarray) -> float:
    """Mean pairwise Jaccard distance between the samples' sounding cells."""
    n = len(rolls)
    if n < 2:
        return float("nan")
    flat = rolls.reshape(n, -1).astype(np.float64)
    both = flat @ flat.T  # (N, N) cells sounding in both
    sizes = flat.sum(1)
    either = sizes[:, None] + sizes[None, :] - both
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.where(either > 0, 1.0 - both / either, 0.0)
    i, j = np.triu_indices(n, k=1)
    return float(dist[i, j].mean())


def diversity(rolls: np.ndarray, steps_per_bar: int = STEPS_PER_BAR) -> Diversity:
    """``rolls``: (N, steps, keys) bool, N samples of equal length."""
    rolls = np.asarray(rolls, dtype=bool)
    frac, bars = distinct_bars(rolls, steps_per_bar)
    return Diversity(len(rolls), bars, frac, mean_distance(rolls))
