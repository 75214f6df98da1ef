"""Training C-RNN-GAN: notes as four continuous features, sequences of ``block_size`` notes.

Each file is read on the notes grid, its notes in (start, pitch) order as (step, length,
pitch, velocity) — the time since the previous onset and the length in beats (a piece's
first note has step 0), the MIDI pitch and velocity. Sequences are drawn from the
concatenated split (across piece boundaries, as the note RNN's windows are) and transposed at
random. Diversity rolls: the first four bars of each sample or data sequence on a sixteenth
grid. The loop is ``models.gan_train``'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from antiphon.models.crnngan import CRNNDiscriminator, CRNNGANConfig
from antiphon.models.diversity import STEPS_PER_BAR, roll_of_notes
from antiphon.models.gan import d_loss, feature_matching, g_adversarial
from antiphon.models.gan_train import Losses, train_gan
from antiphon.models.midi.notes import Grid, Note
from antiphon.models.notes_train import NoteSplit
from antiphon.models.train import TrainConfig

ROLL_BARS = 4
ROLL_TPQ = 4  # a sixteenth a tick


def read_notes(notes: list[Note], tpq: int) -> np.ndarray:
    """``models.gan_data`` reader: (N, 4) float32 step and length in beats, pitch, velocity."""
    ordered = sorted(notes, key=lambda n: (n.start, n.pitch))
    starts = np.asarray([n.start for n in ordered], dtype=np.float64)
    ends = np.asarray([n.end if n.end is not None else n.start + 1 for n in ordered], np.float64)
    steps = np.diff(starts, prepend=starts[:1])
    return np.stack(
        [
            steps / tpq,
            (ends - starts) / tpq,
            np.asarray([n.pitch for n in ordered], dtype=np.float64),
            np.asarray([n.velocity for n in ordered], dtype=np.float64),
        ],
        axis=1,
    ).astype(np.float32)


def notes_of_features(features: np.ndarray, c: CRNNGANConfig, tpq: int) -> list[tuple[int, ...]]:
    """Model-unit features (S, 4) -> (start tick, end tick, pitch) notes, as the voice reads
    them (times clamped to 0..max_beats and rounded to the grid, pitch rounded)."""
    notes, t = [], 0
    for step, length, pitch, _ in features:
        t += round(min(max(float(step), 0.0), c.max_beats) * tpq)
        ticks = max(1, round(min(max(float(length), 0.0), c.max_beats) * tpq))
        p = round(float(pitch) * c.pitch_scale + c.pitch_center)
        notes.append((t, t + ticks, min(127, max(0, p))))
    return notes


def rolls_of(sequences: np.ndarray, c: CRNNGANConfig) -> np.ndarray:
    steps = ROLL_BARS * STEPS_PER_BAR
    return np.stack([roll_of_notes(notes_of_features(s, c, ROLL_TPQ), steps, 1) for s in sequences])


class SequenceBatches:
    def __init__(self, split: NoteSplit, seed: int, transpose: int, c: CRNNGANConfig) -> None:
        if len(split.notes) < 2:
            raise ValueError("the training split holds fewer than two notes")
        self.split, self.transpose, self.config = split, transpose, c
        self.rng = np.random.default_rng(seed)

    def sequences(self, size: int, rng: np.random.Generator, shift: bool = True) -> np.ndarray:
        rows, n = self.split.notes, self.config.block_size
        out = []
        for _ in range(size):
            if len(rows) <= n:
                w = np.resize(rows, (n, 4)).copy()
            else:
                start = int(rng.integers(0, len(rows) - n + 1))
                w = rows[start : start + n].copy()
            if shift:
                w[:, 2] += rng.integers(-self.transpose, self.transpose + 1)
            out.append(w)
        scaled = self.config.scale(torch.from_numpy(np.stack(out)))
        return scaled.numpy()  # (B, S, 4) model units

    def batch(self, size: int, device: torch.device) -> dict[str, torch.Tensor]:
        real = self.sequences(size, self.rng)
        noise = self.rng.standard_normal((size, self.config.block_size, self.config.noise))
        return {
            "real": torch.from_numpy(real).to(device),
            "noise": torch.from_numpy(noise.astype(np.float32)).to(device),
        }


class CRNNGANRecipe:
    reader = "antiphon.models.crnngan_train:read_notes"
    columns = 4
    unit = "notes"

    def per_row(self, config: CRNNGANConfig) -> int:
        return config.block_size

    def discriminator(self, config: CRNNGANConfig) -> torch.nn.Module:
        return CRNNDiscriminator(config)

    def batches(
        self, split: NoteSplit, cfg: TrainConfig, config: Any, grid: Grid
    ) -> SequenceBatches:
        return SequenceBatches(split, cfg.seed, cfg.transpose, config)

    def pretrain_loss(self, g: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.mse_loss(g.teacher_forced(batch["noise"], batch["real"]), batch["real"])

    def d_loss(self, g: Any, d: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            fake = g.generate(batch["noise"])
        real_logits, _ = d(batch["real"])
        fake_logits, _ = d(fake)
        return d_loss(real_logits, fake_logits, g.config.label_smoothing)

    def g_loss(self, g: Any, d: Any, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> Losses:
        fake = g.generate(noise)
        fake_logits, fake_feats = d(fake)
        adversarial = g_adversarial(fake_logits)
        if not g.config.feature_matching:
            return Losses(adversarial, adversarial)
        with torch.no_grad():
            _, real_feats = d(batch["real"])
        return Losses(feature_matching(real_feats, fake_feats), adversarial)

    def sample_rolls(self, g: Any, split: NoteSplit, n: int, seed: int) -> np.ndarray:
        c = g.config
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((n, c.block_size, c.noise)).astype(np.float32)
        device = next(g.parameters()).device
        return rolls_of(g.generate(torch.from_numpy(noise).to(device)).cpu().numpy(), c)

    def data_rolls(self, split: NoteSplit, config: Any, n: int, seed: int) -> np.ndarray:
        batches = SequenceBatches(split, seed, 0, config)
        return rolls_of(batches.sequences(n, np.random.default_rng(seed), shift=False), config)


def train_crnngan(
    cfg: TrainConfig, *, resume: bool = False, progress: bool = True, log: Any = None
) -> dict:
    return train_gan(CRNNGANRecipe(), cfg, resume=resume, progress=progress, log=log)
