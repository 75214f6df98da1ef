"""Training MidiNet: bars of melody with the previous bar and the chord, from any corpus.

Each file is read on the notes grid and cut into 4/4 bars of 16 steps (``models.midi.bars``):
the melody is the skyline (a chorale's soprano, a folk tune's line), the chord comes from the
lower voices (none for a bare tune). A training example is a bar that sounds at least one
note, the bar before it in the same piece (silence before a piece's first bar) and its
chord; examples are transposed at random by up to ``--transpose`` semitones, melody and
chord root together. The loop is ``models.gan_train``'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from antiphon.models.gan import d_loss, feature_matching, g_adversarial, mean_matching
from antiphon.models.gan_train import Losses, train_gan
from antiphon.models.midi.bars import (
    REST,
    STEPS,
    chord_of_code,
    chord_vector,
    melody_roll,
    piece_bars,
)
from antiphon.models.midi.notes import Grid, Note
from antiphon.models.midinet import MidiNetConfig, MidiNetDiscriminator
from antiphon.models.notes_train import NoteSplit
from antiphon.models.train import TrainConfig


def read_bars(notes: list[Note], tpq: int) -> np.ndarray:
    """``models.gan_data`` reader: (bars, 17) int16 melody pitches + chord code."""
    spans = [(n.start, n.end if n.end is not None else n.start + 1, n.pitch) for n in notes]
    return piece_bars(spans, tpq)


def examples(split: NoteSplit) -> tuple[np.ndarray, np.ndarray]:
    """(indices of bars with a note, index of the bar before each, -1 at a piece's start)."""
    rows = split.notes
    sounding = (rows[:, :STEPS] != REST).any(axis=1)
    starts = np.zeros(len(rows), dtype=bool)
    starts[split.offsets[:-1][split.offsets[:-1] < len(rows)]] = True
    idx = np.flatnonzero(sounding)
    prev = np.where(starts[idx], -1, idx - 1)
    return idx, prev


def _transposed(melody: np.ndarray, k: int) -> np.ndarray:
    return np.where(melody == REST, REST, melody + k)


def _chord(code: int, k: int) -> np.ndarray:
    chord = chord_of_code(int(code))
    return chord_vector(None if chord is None else ((chord[0] + k) % 12, chord[1]))


def condition_arrays(
    rows: np.ndarray, idx: np.ndarray, prev: np.ndarray, shifts: np.ndarray, c: MidiNetConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bars (N, 16, W), previous bars (N, 16, W), chords (N, 14)) float32 for examples."""
    silence = np.full(STEPS, REST, dtype=np.int16)
    bars, prevs, chords = [], [], []
    for i, p, k in zip(idx, prev, shifts):
        bars.append(melody_roll(_transposed(rows[i, :STEPS], k), c.pitch_lo, c.n_keys))
        before = silence if p < 0 else _transposed(rows[p, :STEPS], k)
        prevs.append(melody_roll(before, c.pitch_lo, c.n_keys))
        chords.append(_chord(rows[i, STEPS], k))
    return np.stack(bars), np.stack(prevs), np.stack(chords)


class BarBatches:
    def __init__(self, split: NoteSplit, seed: int, transpose: int, c: MidiNetConfig) -> None:
        self.split, self.transpose, self.config = split, transpose, c
        self.idx, self.prev = examples(split)
        if not len(self.idx):
            raise ValueError("no bar of the training split sounds a note")
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int, device: torch.device) -> dict[str, torch.Tensor]:
        pick = self.rng.integers(0, len(self.idx), size)
        shifts = self.rng.integers(-self.transpose, self.transpose + 1, size)
        bar, prev, chord = condition_arrays(
            self.split.notes, self.idx[pick], self.prev[pick], shifts, self.config
        )
        noise = self.rng.standard_normal((size, self.config.noise)).astype(np.float32)
        arrays = {"bar": bar, "prev": prev, "chord": chord, "noise": noise}
        return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}


def bars_of_rolls(probs: np.ndarray) -> np.ndarray:
    """(N, 16, W) step distributions -> (N, 16, W - 1) bool rolls of the likeliest choice
    (the rest column dropped): what the voice plays greedily."""
    keys = probs.shape[-1] - 1
    best = probs.argmax(-1)
    roll = np.zeros((*best.shape, keys), dtype=bool)
    n, s = np.nonzero(best < keys)
    roll[n, s, best[n, s]] = True
    return roll


class MidiNetRecipe:
    reader = "antiphon.models.midinet_train:read_bars"
    columns = STEPS + 1
    unit = "bars"

    def per_row(self, config: MidiNetConfig) -> int:
        return 1

    def discriminator(self, config: MidiNetConfig) -> torch.nn.Module:
        return MidiNetDiscriminator(config)

    def batches(self, split: NoteSplit, cfg: TrainConfig, config: Any, grid: Grid) -> BarBatches:
        return BarBatches(split, cfg.seed, cfg.transpose, config)

    def pretrain_loss(self, g: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None

    def d_loss(self, g: Any, d: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        c = g.config
        with torch.no_grad():
            fake = g.bar(batch["noise"], batch["prev"], batch["chord"])
        real_logits, _ = d(batch["bar"], batch["chord"])
        fake_logits, _ = d(fake, batch["chord"])
        return d_loss(real_logits, fake_logits, c.label_smoothing)

    def g_loss(self, g: Any, d: Any, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> Losses:
        c = g.config
        fake = g.bar(noise, batch["prev"], batch["chord"])
        fake_logits, fake_feats = d(fake, batch["chord"])
        with torch.no_grad():
            _, real_feats = d(batch["bar"], batch["chord"])
        adversarial = g_adversarial(fake_logits)
        total = (
            adversarial
            + c.lambda_mean * mean_matching(batch["bar"], fake)
            + c.lambda_fm * feature_matching(real_feats, fake_feats)
        )
        return Losses(total, adversarial)

    def _conditions(
        self, split: NoteSplit, c: MidiNetConfig, n: int, seed: int
    ) -> tuple[np.ndarray, ...]:
        idx, prev = examples(split)
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, len(idx), n)
        return condition_arrays(split.notes, idx[pick], prev[pick], np.zeros(n, np.int64), c)

    def sample_rolls(self, g: Any, split: NoteSplit, n: int, seed: int) -> np.ndarray:
        """One bar per sample, under the conditions of ``n`` real bars (``data_rolls``'s)."""
        c = g.config
        _, prev, chord = self._conditions(split, c, n, seed)
        noise = np.random.default_rng(seed + 1).standard_normal((n, c.noise)).astype(np.float32)
        device = next(g.parameters()).device
        t = [torch.from_numpy(a).to(device) for a in (noise, prev, chord)]
        return bars_of_rolls(g.bar(*t).cpu().numpy())

    def data_rolls(self, split: NoteSplit, config: Any, n: int, seed: int) -> np.ndarray:
        bars, _, _ = self._conditions(split, config, n, seed)
        return bars_of_rolls(bars)


def train_midinet(
    cfg: TrainConfig, *, resume: bool = False, progress: bool = True, log: Any = None
) -> dict:
    return train_gan(MidiNetRecipe(), cfg, resume=resume, progress=progress, log=log)
