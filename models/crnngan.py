"""C-RNN-GAN (Mogren 2016): continuous recurrent networks with adversarial training.

A note is four continuous features, in (start, pitch) order: the time since the previous
note's onset and the note's length (beats), its pitch and its velocity, scaled so each is
around unit size (``scale``/``unscale``; the paper's tone is a frequency, here a MIDI pitch,
which the daemon plays without rounding twice). The **generator** is an LSTM fed, at each
step, fresh noise and its own previous output (the note it just wrote; zeros before the
first), with a linear layer to the four features. The **discriminator** is a bidirectional
LSTM over the whole sequence, a logit per note, averaged as the paper averages its per-step
decisions; with ``minibatch_kernels`` it also sees minibatch features of the sequence.

Training (``crnngan_train``): ``pretrain_steps`` of maximum likelihood first (the generator
teacher-forced on real notes, squared error on the next note — the paper's pre-training),
then the GAN: feature matching (G matches the mean of D's last LSTM layer on real data, the
paper's choice), one-sided label smoothing on D, and ``models.gan.SkipRule`` pausing the
player that is winning (with the original's inverted freeze fixed).

``forward`` takes the previous outputs as an input (teacher forcing; the exported step has
the noise, the previous note and the LSTM state as inputs, so sampling stays outside the
graph); ``generate`` feeds the outputs back, differentiably, for the adversarial phase. The
default is sized for 2 cores; the paper's is ``--set hidden=350 --set d_hidden=350`` with
``--block-size 200`` notes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from antiphon.models.gan import MinibatchDiscrimination

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (n_layer, B, hidden)
FEATURES = 4  # step (beats), length (beats), pitch, velocity


@dataclass
class CRNNGANConfig:
    hidden: int = 128  # the paper's 350
    n_layer: int = 2
    noise: int = 32
    d_hidden: int = 128  # each direction of D's LSTM; the paper's 350
    d_layer: int = 2
    minibatch_kernels: int = 0  # > 0: minibatch discrimination (the paper's option)
    minibatch_dim: int = 8
    block_size: int = 64  # notes per training sequence (the paper's songs: 200)
    max_beats: float = 4.0  # steps and lengths are clipped to this
    pitch_center: float = 64.0
    pitch_scale: float = 12.0
    velocity_scale: float = 127.0
    pretrain_steps: int = 300  # maximum likelihood before the GAN
    feature_matching: bool = True
    label_smoothing: float = 0.1
    skip_rule: bool = True
    g_updates: int = 1
    d_lr_scale: float = 0.5  # the paper's d_lr_factor

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CRNNGANConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def scale(self, notes: torch.Tensor) -> torch.Tensor:
        """(..., 4) step, length, pitch, velocity in beats and MIDI units -> model units."""
        step, length, pitch, velocity = notes.unbind(-1)
        return torch.stack(
            (
                step.clamp(0, self.max_beats),
                length.clamp(0, self.max_beats),
                (pitch - self.pitch_center) / self.pitch_scale,
                velocity / self.velocity_scale,
            ),
            dim=-1,
        )


class CRNNGenerator(nn.Module):
    """(noise (B, S, Z), previous notes (B, S, 4), state) -> (notes (B, S, 4), state)."""

    def __init__(self, config: CRNNGANConfig) -> None:
        super().__init__()
        self.config = c = config
        self.lstm = nn.LSTM(c.noise + FEATURES, c.hidden, c.n_layer, batch_first=True)
        self.out = nn.Linear(c.hidden, FEATURES)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def empty_state(self, batch: int = 1) -> State:
        z = torch.zeros(self.config.n_layer, batch, self.config.hidden)
        return z, z.clone()

    def forward(
        self, noise: torch.Tensor, prev: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        y, (h, c) = self.lstm(torch.cat((noise, prev), dim=-1), state)  # (B, S, hidden)
        return self.out(y), (h, c)  # (B, S, 4)

    def generate(self, noise: torch.Tensor) -> torch.Tensor:
        """Free-running: each step fed its own previous output; (B, S, Z) -> (B, S, 4)."""
        b, s, _ = noise.shape
        prev = noise.new_zeros(b, 1, FEATURES)
        state = None
        outs = []
        for t in range(s):
            prev, state = self(noise[:, t : t + 1], prev, state)
            outs.append(prev)
        return torch.cat(outs, dim=1)

    def teacher_forced(self, noise: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Each step fed the real previous note (zeros before the first): (B, S, 4)."""
        prev = F.pad(real[:, :-1], (0, 0, 1, 0))
        return self(noise, prev)[0]


class CRNNDiscriminator(nn.Module):
    """(notes (B, S, 4)) -> (logits (B, S), last LSTM layer's outputs (B, S, 2H))."""

    def __init__(self, config: CRNNGANConfig) -> None:
        super().__init__()
        self.config = c = config
        self.lstm = nn.LSTM(FEATURES, c.d_hidden, c.d_layer, batch_first=True, bidirectional=True)
        self.decision = nn.Linear(2 * c.d_hidden, 1)
        self.minibatch = (
            MinibatchDiscrimination(2 * c.d_hidden, c.minibatch_kernels, c.minibatch_dim)
            if c.minibatch_kernels
            else None
        )
        self.minibatch_out = nn.Linear(c.minibatch_kernels, 1) if c.minibatch_kernels else None

    def forward(self, notes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, _ = self.lstm(notes)  # (B, S, 2H)
        logits = self.decision(feats)[..., 0]  # (B, S)
        if self.minibatch is not None and self.minibatch_out is not None:
            close = self.minibatch(feats.mean(1))[:, -self.config.minibatch_kernels :]  # (B, K)
            logits = logits + self.minibatch_out(close)  # (B, 1) added to every note's logit
        return logits, feats
