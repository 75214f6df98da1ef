"""The note RNN of TensorFlow's music-generation tutorial: notes in, three heads out.

A piece is a sequence of notes in (start, pitch) order, each read as (pitch, step, duration):
``step`` is the time from the previous note's start to this one's, ``duration`` the note's
length. Unlike the tutorial, times are in beats (quarter notes), not seconds, so the same
phrase at another tempo is the same sequence, and the grid the daemon plays on is in beats.
An LSTM (one layer of 128 units in the original) reads the notes; three heads predict the
next note: pitch (128-way logits), step and duration (regression). The tutorial feeds the
pitch as one number (pitch / 128); by default it enters through a learned embedding instead
(``pitch_embedding=0`` restores the tutorial's input exactly). Polyphony is read the
tutorial's way, as its notes one after another (a chord is notes with step 0): the model is
monophonic by design.

The loss is the tutorial's: cross-entropy on pitch, and for step and duration the squared
error plus a penalty on negative predictions (``mse + 10 * mean(relu(-pred))``), weighted
pitch 0.05, step 1.0, duration 1.0. Unlike the tutorial (many-to-one over 25-note windows),
every position of a window is a training example; the recurrent state is explicit, so
``forward`` serves whole windows in training and one note per call once exported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (n_layer, B, hidden)


@dataclass
class NoteRNNConfig:
    hidden: int = 128  # the original's LSTM size
    n_layer: int = 1
    dropout: float = 0.0  # between LSTM layers (n_layer > 1)
    pitches: int = 128  # MIDI pitches: the pitch head's classes
    # > 0: a learned pitch embedding of this size; 0: the tutorial's input, pitch / 128 as one
    # number (an LSTM hardly tells neighbouring pitches apart that way: on Bach chorales it
    # stays behind a pitch bigram, where an embedding of 32 beats it by 0.75 nats/note)
    pitch_embedding: int = 32
    block_size: int = 512  # notes per training window
    max_beats: float = 8.0  # steps and durations are clipped to this: a long rest is one rest
    pitch_weight: float = 0.05
    step_weight: float = 1.0
    duration_weight: float = 1.0
    positive_pressure: float = 10.0  # weight of the penalty on negative step/duration

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NoteRNNConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def pressure_mse(pred: torch.Tensor, target: torch.Tensor, pressure: float) -> torch.Tensor:
    """The tutorial's ``mse_with_positive_pressure``: squared error, plus ``pressure`` times
    how far below zero the prediction is (a step or a duration cannot be negative)."""
    return ((target - pred) ** 2 + pressure * F.relu(-pred)).mean()


class NoteRNN(nn.Module):
    def __init__(self, config: NoteRNNConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.pitches, c.pitch_embedding) if c.pitch_embedding else None
        n_in = 2 + (c.pitch_embedding or 1)
        self.lstm = nn.LSTM(
            n_in, c.hidden, c.n_layer, batch_first=True, dropout=c.dropout if c.n_layer > 1 else 0.0
        )
        self.pitch_head = nn.Linear(c.hidden, c.pitches)
        self.step_head = nn.Linear(c.hidden, 1)
        self.duration_head = nn.Linear(c.hidden, 1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def empty_state(self, batch: int = 1) -> State:
        z = torch.zeros(self.config.n_layer, batch, self.config.hidden)
        return z, z.clone()

    def forward(
        self,
        pitch: torch.Tensor,  # (B, S) int64 MIDI pitch
        step: torch.Tensor,  # (B, S) float beats since the previous note's start
        duration: torch.Tensor,  # (B, S) float beats
        state: State | None = None,  # (h, c) each (n_layer, B, hidden); None: zeros
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, State]:
        times = torch.stack((step, duration), dim=-1)  # (B, S, 2)
        if self.embed is None:  # the tutorial's input: pitch scaled to [0, 1)
            x = torch.cat((pitch.to(step.dtype).unsqueeze(-1) / self.config.pitches, times), -1)
        else:
            x = torch.cat((self.embed(pitch), times), dim=-1)  # (B, S, E+2)
        y, (h, c) = self.lstm(x, state)  # y: (B, S, hidden)
        logits = self.pitch_head(y)  # (B, S, pitches)
        next_step = self.step_head(y).squeeze(-1)  # (B, S)
        next_duration = self.duration_head(y).squeeze(-1)  # (B, S)
        return logits, next_step, next_duration, (h, c)

    def loss_terms(
        self, pitch: torch.Tensor, step: torch.Tensor, duration: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Each note of (B, S+1)-note windows predicts the next: the three terms and their
        weighted sum ``total`` (the tutorial's loss, per predicted note)."""
        logits, s, d, _ = self(pitch[:, :-1], step[:, :-1], duration[:, :-1])
        c = self.config
        terms = {
            "pitch": F.cross_entropy(logits.reshape(-1, c.pitches), pitch[:, 1:].reshape(-1)),
            "step": pressure_mse(s, step[:, 1:], c.positive_pressure),
            "duration": pressure_mse(d, duration[:, 1:], c.positive_pressure),
        }
        terms["total"] = (
            c.pitch_weight * terms["pitch"]
            + c.step_weight * terms["step"]
            + c.duration_weight * terms["duration"]
        )
        return terms
