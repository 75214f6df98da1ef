"""What the adversarial families share: minibatch discrimination, feature matching, one-sided
label smoothing, and the rule that decides whether D or G sits out an update.

- ``MinibatchDiscrimination`` (Salimans et al. 2016): each sample's features are projected to
  ``kernels`` small matrices; the L1 distances to every other sample of the batch, through
  ``exp(-d)``, are appended to its features, so D can see a batch whose members all look alike
  (mode collapse) and G is pushed to spread out. Used by MidiNet (Yang et al. 2017) and,
  optionally, C-RNN-GAN.
- ``feature_matching`` (Salimans et al. 2016): G matches the batch mean of an intermediate D
  layer on real data instead of (or besides) fooling D's last output.
- ``smoothed_targets``: one-sided label smoothing — real targets become ``1 - smoothing``, fake
  targets stay 0 (smoothing the fake side too would reward D for putting mass on G's samples).
- ``SkipRule``: C-RNN-GAN's balancing of the two players, with its bug fixed (see the class).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from antiphon.models.wholebatch import batch_mean, batch_rows


class MinibatchDiscrimination(nn.Module):
    """(B, F) features -> (B, F + kernels): each sample's closeness to the rest of its batch."""

    def __init__(self, in_features: int, kernels: int = 16, kernel_dim: int = 8) -> None:
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * 0.1)

    @property
    def out_features(self) -> int:
        return self.T.shape[0] + self.kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x @ self.T).view(-1, self.kernels, self.kernel_dim)  # (b, K, C)
        # Against every sample of the batch, the other processes' rows too under torchrun.
        whole = batch_rows(m)  # (B, K, C)
        dist = (whole.unsqueeze(0) - m.unsqueeze(1)).abs().sum(-1)  # (b, B, K) L1 between samples
        # exp(-0) = 1 for a sample against itself: subtracted, so a batch of one adds zeros.
        closeness = torch.exp(-dist).sum(1) - 1.0  # (B, K)
        return torch.cat((x, closeness), dim=1)


def feature_matching(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between the batch means of D's features on real and on generated
    data (every axis but the last is averaged, over the whole batch under torchrun). Real
    features carry no gradient."""
    r = batch_mean(real.detach().reshape(-1, real.shape[-1]))
    f = batch_mean(fake.reshape(-1, fake.shape[-1]))
    return ((r - f) ** 2).sum()


def mean_matching(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """MidiNet's first regulariser: squared L2 distance between the mean real and the mean
    generated sample (for bars: the mean bar), normalised per sample element."""
    return ((batch_mean(real.detach()) - batch_mean(fake)) ** 2).sum() / real[0].numel()


def smoothed_targets(logits: torch.Tensor, real: bool, smoothing: float) -> torch.Tensor:
    """One-sided label smoothing: real targets ``1 - smoothing``, fake targets 0."""
    return torch.full_like(logits, 1.0 - smoothing if real else 0.0)


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, smoothing: float) -> torch.Tensor:
    """D's binary cross-entropy, the mean of its real and its generated batch's: on the scale
    of G's loss (both ln 2 = 0.693 where D cannot tell), which ``SkipRule`` compares it with."""
    real = F.binary_cross_entropy_with_logits(
        real_logits, smoothed_targets(real_logits, True, smoothing)
    )
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return (real + fake) / 2


def g_adversarial(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss: -log D(G(z)), the targets never smoothed."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@dataclass
class SkipRule:
    """Whether D or G sits out the next update, from the players' recent losses.

    The rule: once either loss is below ``active_below``, the player that is winning by a
    margin pauses — if D's loss is under ``ratio`` times G's, D is winning and D skips its
    update (G trains); if G's loss is under ``ratio`` times D's, G skips (D trains). Never
    both: a step where nobody trains only wastes the batch. A player whose loss is exactly 0
    has nothing left to learn from this batch and pauses too.

    Why fixed: C-RNN-GAN's ``run_epoch`` (olofmogren/c-rnn-gan, rnn_gan.py) prints "Pausing
    optimization of D" when ``g_loss * .7 > d_loss`` and "of G" when ``d_loss * .7 > g_loss``,
    but the statement that pauses G sits outside its ``elif``: as soon as either loss is under
    2.0 the generator is frozen whatever the comparison said, so while D wins both players are
    frozen, and otherwise the player the message names is not the one the code stops — the
    freezing does not follow the condition its messages describe. Here the decision is one
    function, its result is logged (``skipped_d``/``skipped_g`` in the training history), and
    a test checks each branch.

    The losses compared are exponential moving averages (``smoothing``): one noisy batch
    should not flip who trains. They must be on one scale: D's is the mean of its two
    cross-entropies (``d_loss``), G's its adversarial term alone, both ln 2 at the balance
    (with D's sum, as in the original, D reads twice G's loss there and G would always skip).
    """

    ratio: float = 0.7
    active_below: float = 2.0
    smoothing: float = 0.9  # EMA factor of the losses the rule reads
    d: float | None = None
    g: float | None = None

    def update(self, d_loss: float, g_loss: float) -> None:
        a = self.smoothing
        self.d = d_loss if self.d is None else a * self.d + (1 - a) * d_loss
        self.g = g_loss if self.g is None else a * self.g + (1 - a) * g_loss

    def decide(self) -> tuple[bool, bool]:
        """(train D, train G) for the next step."""
        d, g = self.d, self.g
        if d is None or g is None:
            return True, True
        if d == 0.0 and g == 0.0:
            return True, True
        if d == 0.0:
            return False, True
        if g == 0.0:
            return True, False
        if min(d, g) >= self.active_below:
            return True, True
        if d < self.ratio * g:  # D is winning: let G catch up
            return False, True
        if g < self.ratio * d:  # G is winning: let D catch up
            return True, False
        return True, True

    def state_dict(self) -> dict:
        return {"d": self.d, "g": self.g}

    def load_state_dict(self, state: dict) -> None:
        self.d, self.g = state.get("d"), state.get("g")


class PairOptimizer:
    """G's and D's optimizers saved and restored as one (the checkpoint format holds one
    ``optimizer``); ``param_groups`` are both players', so the shared schedule sets both."""

    def __init__(self, g: torch.optim.Optimizer, d: torch.optim.Optimizer) -> None:
        self.g, self.d = g, d

    @property
    def param_groups(self) -> list[dict]:
        return [*self.g.param_groups, *self.d.param_groups]

    def state_dict(self) -> dict:
        return {"g": self.g.state_dict(), "d": self.d.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.g.load_state_dict(state["g"])
        self.d.load_state_dict(state["d"])
