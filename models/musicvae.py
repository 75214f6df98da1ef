"""MusicVAE (Roberts et al. 2018): a melody encoded to a latent and decoded from it.

The encoder is a bidirectional LSTM over the phrase's melody events (``models.midi.melody``);
its last states, forward and backward, give the posterior's mean and scale (softplus),
``q(z|x) = N(mu, sigma)``. The decoder is an LSTM fed, at every step, the previous event
and a conditioning vector; its initial state is ``tanh(W c)``:

- flat (``bars_per_section = 0``, the 2-bar models): one section, the conditioning is z;
- hierarchical ("conductor", for 16 bars): a conductor LSTM, its state initialised from z,
  runs one step per section of ``bars_per_section`` bars and emits that section's
  conditioning vector; the decoder's state is set afresh from it at each section, so a bar
  cannot ignore the latent and lean on the bar before (the paper's cure for posterior
  collapse). The previous event still flows across sections.

Loss: cross-entropy of the teacher-forced events plus ``beta`` times the KL to N(0, I)
beyond the free bits: ``max(KL - free_bits * ln 2, 0)`` per sequence, ``beta`` rising as
``max_beta * (1 - beta_rate ** step)`` (Magenta's schedule). Randomness stays outside the
graph: the reparameterised draw takes its noise as an argument, and export runs the
encoder, the conductor and the decoder step as separate parts (``export.vae_graph``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from antiphon.models.midi.melody import FIRST_PITCH, STEPS_PER_BAR

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (n_layer, B, hidden)


@dataclass
class MusicVAEConfig:
    bars: int = 2
    steps_per_bar: int = STEPS_PER_BAR
    bars_per_section: int = 0  # 0: flat decoder; > 0: the conductor, a section per this many bars
    pitch_lo: int = 21
    n_pitches: int = 88
    embedding: int = 32
    encoder_hidden: int = 256  # per direction (published: 2048)
    encoder_layers: int = 1
    z_size: int = 128  # published: 512
    decoder_hidden: int = 256  # published: 2048 (2-bar), 1024 (16-bar, 2 layers)
    decoder_layers: int = 2  # published: 3 (2-bar), 2 (16-bar)
    conductor_hidden: int = 256  # published: 1024
    conductor_layers: int = 2
    condition: int = 128  # size of the conductor's per-section vectors (flat: z_size)
    dropout: float = 0.0
    max_beta: float = 0.5  # published: 0.5 (2-bar melody), 0.2 (16-bar)
    beta_rate: float = 0.999  # published: 0.99999 over 50k+ steps; ours trains in thousands
    # Published: 0 (2-bar, batch 512 for days), 256 (16-bar). At 0 on this machine's budget
    # the latent went unused (Nottingham, 800 x 32: KL 4 bits, teacher-forced accuracy 0.675,
    # the share of no-event steps); 8,000 x 32 at 48 used 48 bits (0.932), at 96, 95 (0.972).
    free_bits: float = 96.0

    @property
    def steps(self) -> int:
        return self.bars * self.steps_per_bar

    @property
    def classes(self) -> int:
        return FIRST_PITCH + self.n_pitches

    @property
    def sections(self) -> int:
        return 1 if self.bars_per_section <= 0 else -(-self.bars // self.bars_per_section)

    @property
    def section_steps(self) -> int:
        return (
            self.steps if self.bars_per_section <= 0 else self.bars_per_section * self.steps_per_bar
        )

    @property
    def condition_size(self) -> int:
        return self.z_size if self.bars_per_section <= 0 else self.condition

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MusicVAEConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def beta_at(step: int, c: MusicVAEConfig) -> float:
    return c.max_beta * (1.0 - c.beta_rate**step)


class MusicVAE(nn.Module):
    def __init__(self, config: MusicVAEConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.classes + 1, c.embedding)  # + the start symbol
        self.start = c.classes
        self.encoder = nn.LSTM(
            c.embedding,
            c.encoder_hidden,
            c.encoder_layers,
            batch_first=True,
            bidirectional=True,
            dropout=c.dropout if c.encoder_layers > 1 else 0.0,
        )
        self.to_mu = nn.Linear(2 * c.encoder_hidden, c.z_size)
        self.to_sigma = nn.Linear(2 * c.encoder_hidden, c.z_size)
        if c.bars_per_section > 0:
            self.conductor_init = nn.Linear(c.z_size, 2 * c.conductor_layers * c.conductor_hidden)
            self.conductor = nn.LSTM(
                c.z_size, c.conductor_hidden, c.conductor_layers, batch_first=True
            )
            self.to_condition = nn.Linear(c.conductor_hidden, c.condition)
        self.decoder_init = nn.Linear(c.condition_size, 2 * c.decoder_layers * c.decoder_hidden)
        self.decoder = nn.LSTM(
            c.embedding + c.condition_size,
            c.decoder_hidden,
            c.decoder_layers,
            batch_first=True,
            dropout=c.dropout if c.decoder_layers > 1 else 0.0,
        )
        self.head = nn.Linear(c.decoder_hidden, c.classes)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- the parts export runs one by one ---------------------------------------------------
    def encode(self, melody: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) events -> the posterior's mu and sigma, each (B, Z)."""
        _, (h, _) = self.encoder(self.embed(melody))  # h: (layers * 2, B, He)
        last = torch.cat((h[-2], h[-1]), dim=-1)  # the top layer, forward and backward
        return self.to_mu(last), F.softplus(self.to_sigma(last)) + 1e-4

    def conduct(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> the conditioning of every section, (B, sections, C)."""
        c = self.config
        if c.bars_per_section <= 0:
            return z.unsqueeze(1)
        state = _split_state(torch.tanh(self.conductor_init(z)), c.conductor_layers)
        inputs = torch.zeros(z.shape[0], c.sections, c.z_size, dtype=z.dtype, device=z.device)
        y, _ = self.conductor(inputs, state)  # (B, sections, Hc)
        return self.to_condition(y)

    def initial_state(self, condition: torch.Tensor) -> State:
        """(B, C) -> the decoder's state at the start of a section."""
        return _split_state(torch.tanh(self.decoder_init(condition)), self.config.decoder_layers)

    def decode_steps(
        self, tokens: torch.Tensor, condition: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        """(B, S) previous events (``start`` at the very first step) + (B, C) -> the next
        events' logits (B, S, classes) and the state after them."""
        x = self.embed(tokens)  # (B, S, E)
        cond = condition.unsqueeze(1).expand(-1, tokens.shape[1], -1)  # (B, S, C)
        y, state = self.decoder(torch.cat((x, cond), dim=-1), state)
        return self.head(y), state

    # -- training ------------------------------------------------------------------------------
    def teacher_forced(self, melody: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(B, T) events, (B, Z) latents -> (B, T, classes) logits of each event given the
        ones before it."""
        c = self.config
        B, T = melody.shape
        start = torch.full((B, 1), self.start, dtype=melody.dtype, device=melody.device)
        previous = torch.cat((start, melody[:, :-1]), 1)
        conditions = self.conduct(z)  # (B, sections, C)
        out = []
        for s in range(c.sections):
            span = slice(s * c.section_steps, min(T, (s + 1) * c.section_steps))
            cond = conditions[:, s]
            logits, _ = self.decode_steps(previous[:, span], cond, self.initial_state(cond))
            out.append(logits)
        return torch.cat(out, dim=1)

    def loss_terms(
        self, melody: torch.Tensor, noise: torch.Tensor, beta: float
    ) -> dict[str, torch.Tensor]:
        """Per-sequence means: reconstruction NLL (nats), KL (nats), the loss, accuracy."""
        c = self.config
        mu, sigma = self.encode(melody)
        z = mu + sigma * noise  # the reparameterised draw; ``noise`` ~ N(0, I) from outside
        logits = self.teacher_forced(melody, z)
        nll = F.cross_entropy(logits.transpose(1, 2), melody, reduction="none").sum(1)  # (B,)
        kl = (0.5 * (mu**2 + sigma**2 - 1.0) - torch.log(sigma)).sum(1)  # (B,)
        free = c.free_bits * math.log(2.0)
        loss = nll + beta * torch.clamp(kl - free, min=0.0)
        accuracy = (logits.argmax(-1) == melody).float().mean()
        return {"loss": loss.mean(), "nll": nll.mean(), "kl": kl.mean(), "accuracy": accuracy}


def _split_state(flat: torch.Tensor, layers: int) -> State:
    """(B, 2 * layers * H) -> (h, c), each (layers, B, H)."""
    B = flat.shape[0]
    hc = flat.reshape(B, 2, layers, -1).permute(1, 2, 0, 3)  # (2, layers, B, H)
    return hc[0].contiguous(), hc[1].contiguous()
