"""MidiNet (Yang, Chou & Yang 2017): a convolutional GAN that writes one bar of melody at a
time, conditioned on the previous bar and on the bar's chord.

A bar is 16 sixteenth steps × (``n_keys`` keys + a rest): each step one key or the rest, a
one-hot row for real bars and a softmax over the row for generated ones (the paper's rows are
sigmoids with the loudest key taken afterwards; a softmax with a rest column makes "one note
or none per step" the model's own output, so a sampler with temperature and top-p can draw
it). The **generator** maps noise z and the chord (12 roots + major/minor, all zero for no
chord; ``models.midi.bars``) through two dense layers to a 2-step feature map, then
transposed convolutions double the time axis 2 -> 4 -> 8 -> 16 and a last one spreads it over
the keys. At every level the chord is appended as constant channels and the **conditioner**
CNN's view of the previous bar at that resolution (it convolves the previous bar over the
keys, then halves time 16 -> 8 -> 4 -> 2), so the new bar follows the one before it.
The **discriminator** convolves the bar (chord appended) over time and keys, then dense
layers, minibatch discrimination and one logit; its first layer's features serve feature
matching.

Training (``midinet_train``): D's BCE with one-sided smoothing; G's non-saturating loss plus
the paper's two regularisers, the **mean-bar** term ``lambda_mean * ||E[bar] - E[G(z)]||^2``
and **feature matching** ``lambda_fm * ||E[f(bar)] - E[f(G(z))]||^2``; G updated
``g_updates`` times per D update, as the paper does. Every BatchNorm is created once, here in
``__init__`` — a popular port builds a fresh, untrained ``BatchNorm`` inside ``forward`` at every
call, so its statistics and affine weights never learn and eval mode normalises with a new
layer's defaults.

The default is sized for 2 CPU cores (``base=32``); the paper's sizes are ``--set base=64
--set cond_channels=16 --set noise=100 --set n_keys=128`` (with ``pitch_lo=0``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from antiphon.models.gan import MinibatchDiscrimination
from antiphon.models.midi.bars import CHORD_DIM, STEPS
from antiphon.models.wholebatch import WholeBatchNorm1d, WholeBatchNorm2d


@dataclass
class MidiNetConfig:
    n_keys: int = 36  # melody keys (3 octaves); a bar row adds the rest column
    pitch_lo: int = 55  # G3: melodies are folded by octaves into [pitch_lo, pitch_lo + n_keys)
    noise: int = 64  # z
    base: int = 32  # channels of the generator's and discriminator's convolutions
    dense: int = 256  # the generator's first dense layer (the paper's 1024)
    cond_channels: int = 16  # the conditioner CNN's channels
    d_dense: int = 128
    minibatch_kernels: int = 16  # 0: no minibatch discrimination
    minibatch_dim: int = 8
    label_smoothing: float = 0.1  # one-sided
    lambda_mean: float = 0.1  # the mean-bar term (the paper's lambda_1)
    lambda_fm: float = 1.0  # feature matching (the paper's lambda_2)
    g_updates: int = 2  # G steps per D step
    d_lr_scale: float = 1.0

    @property
    def width(self) -> int:
        return self.n_keys + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MidiNetConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _with_chord(h: torch.Tensor, chord: torch.Tensor) -> torch.Tensor:
    """Append the chord as constant channels over a (B, C, T, W) map."""
    b, _, t, w = h.shape
    return torch.cat((h, chord[:, :, None, None].expand(b, chord.shape[1], t, w)), dim=1)


class Conditioner(nn.Module):
    """The previous bar (B, 16, W) -> its features at 16, 8, 4 and 2 steps, (B, C, T, 1)."""

    def __init__(self, c: MidiNetConfig) -> None:
        super().__init__()
        ch = c.cond_channels
        self.over_keys = nn.Conv2d(1, ch, kernel_size=(1, c.width))
        self.down = nn.ModuleList(
            nn.Conv2d(ch, ch, kernel_size=(2, 1), stride=(2, 1)) for _ in range(3)
        )
        self.norms = nn.ModuleList(WholeBatchNorm2d(ch) for _ in range(4))

    def forward(self, prev: torch.Tensor) -> list[torch.Tensor]:
        h = F.leaky_relu(self.norms[0](self.over_keys(prev[:, None])), 0.2)  # (B, C, 16, 1)
        levels = [h]
        for conv, norm in zip(self.down, self.norms[1:]):
            h = F.leaky_relu(norm(conv(h)), 0.2)  # time halves: 8, 4, 2
            levels.append(h)
        return levels  # 16, 8, 4, 2 steps


class MidiNetGenerator(nn.Module):
    """(noise (B, Z), previous bar (B, 16, W), chord (B, 14)) -> logits (B, 16, W)."""

    def __init__(self, config: MidiNetConfig) -> None:
        super().__init__()
        self.config = c = config
        y, ch, g = CHORD_DIM, c.cond_channels, c.base
        self.conditioner = Conditioner(c)
        self.fc1 = nn.Linear(c.noise + y, c.dense)
        self.bn1 = WholeBatchNorm1d(c.dense)
        self.fc2 = nn.Linear(c.dense + y, 2 * g * 2)
        self.bn2 = WholeBatchNorm1d(2 * g * 2)
        ins = [2 * g, g, g]
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(i + y + ch, g, kernel_size=(2, 1), stride=(2, 1)) for i in ins
        )
        self.up_norms = nn.ModuleList(WholeBatchNorm2d(g) for _ in ins)
        self.to_keys = nn.ConvTranspose2d(g + y + ch, 1, kernel_size=(1, c.width))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, noise: torch.Tensor, prev: torch.Tensor, chord: torch.Tensor) -> torch.Tensor:
        c16, c8, c4, c2 = self.conditioner(prev)
        h = F.relu(self.bn1(self.fc1(torch.cat((noise, chord), 1))))  # (B, dense)
        h = F.relu(self.bn2(self.fc2(torch.cat((h, chord), 1))))  # (B, 4g)
        h = h.view(-1, 2 * self.config.base, 2, 1)  # (B, 2g, 2, 1)
        for up, norm, cond in zip(self.up, self.up_norms, (c2, c4, c8)):
            h = F.relu(norm(up(torch.cat((_with_chord(h, chord), cond), 1))))  # time doubles
        h = self.to_keys(torch.cat((_with_chord(h, chord), c16), 1))  # (B, 1, 16, W)
        return h[:, 0]  # (B, 16, W) logits: softmax over each step's keys and rest

    def bar(self, noise: torch.Tensor, prev: torch.Tensor, chord: torch.Tensor) -> torch.Tensor:
        """The generated bar as D sees it: each step's distribution over keys and rest."""
        return torch.softmax(self(noise, prev, chord), dim=-1)


class MidiNetDiscriminator(nn.Module):
    """(bar (B, 16, W), chord (B, 14)) -> (logit (B,), first-layer features (B, F))."""

    def __init__(self, config: MidiNetConfig) -> None:
        super().__init__()
        self.config = c = config
        y, d = CHORD_DIM, c.base
        self.conv1 = nn.Conv2d(1 + y, d, kernel_size=(2, c.width), stride=(2, 1))  # (B,d,8,1)
        self.conv2 = nn.Conv2d(d + y, 2 * d, kernel_size=(4, 1), stride=(2, 1))  # (B,2d,3,1)
        self.bn2 = WholeBatchNorm2d(2 * d)
        flat = 2 * d * ((STEPS // 2 - 4) // 2 + 1)
        self.fc = nn.Linear(flat + y, c.d_dense)
        self.minibatch = (
            MinibatchDiscrimination(c.d_dense, c.minibatch_kernels, c.minibatch_dim)
            if c.minibatch_kernels
            else None
        )
        self.out = nn.Linear(self.minibatch.out_features if self.minibatch else c.d_dense, 1)

    def forward(self, bar: torch.Tensor, chord: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.leaky_relu(self.conv1(_with_chord(bar[:, None], chord)), 0.2)  # (B, d, 8, 1)
        h = F.leaky_relu(self.bn2(self.conv2(_with_chord(h1, chord))), 0.2)
        h = F.leaky_relu(self.fc(torch.cat((h.flatten(1), chord), 1)), 0.2)
        if self.minibatch is not None:
            h = self.minibatch(h)
        return self.out(h)[:, 0], h1.flatten(1)
