"""Piano-roll GRU and LSTM: the next 88-key frame from the frames before it.

A stack of recurrent layers reads binary piano-roll frames; its top-layer state *before* a
frame conditions that frame's distribution. Two heads, chosen by ``head``:

- ``"sigmoid"``: 88 independent Bernoullis (the original many-to-one model's output layer).
- ``"nade"``: an RNN-NADE (Boulanger-Lewandowski et al. 2012). The frame's keys form an
  autoregressive chain, low key first: ``p(v) = prod_i p(v_i | v_<i, history)``, each
  conditional a NADE unit whose biases come from the recurrent state. Chords are modelled
  as chords, not as 88 coin flips.

One forward serves training, scoring and the live step alike: ``forward(frames, state)``
returns, for every position ``s``, the logits of every key of frame ``s`` given the history
before ``s`` *and the keys of frame s below it* (``logits[..., i]`` depends on
``frames[..., s, :i]`` only; the sigmoid head ignores the frame). So the exact frame NLL is
one pass over the real frames, and sampling runs the same graph on a partial frame, one
chosen key at a time (``live.frames_voice``). The empty history is the zero state, which is
what the first frame of a piece is predicted from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

CELLS = ("gru", "lstm")
HEADS = ("sigmoid", "nade")
State = tuple[torch.Tensor, ...]  # (h,) for a GRU, (h, c) for an LSTM; each (L, B, H)


@dataclass
class PianoRollConfig:
    cell: str = "gru"  # "gru" | "lstm" (fixed by the family: pianoroll-gru / pianoroll-lstm)
    head: str = "nade"  # "sigmoid" | "nade"
    n_keys: int = 88
    pitch_lo: int = 21  # MIDI pitch of key 0 (A0)
    n_layer: int = 2
    n_hidden: int = 256
    nade_hidden: int = 150  # hidden units of the NADE head
    dropout: float = 0.2  # between recurrent layers and on the conditioning state
    input_dropout: float = 0.0  # training: keys of the history the RNN reads drop out
    seq_len: int = 128  # frames per training window (truncated BPTT); the state runs on
    frame_ticks: int = 2  # grid ticks per frame (2 at tpq 8: a 1/16 note)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.frame_ticks < 1:
            raise ValueError(f"frame_ticks must be >= 1, got {self.frame_ticks}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PianoRollConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class PianoRoll(nn.Module):
    def __init__(self, config: PianoRollConfig) -> None:
        super().__init__()
        self.config = c = config
        rnn = nn.GRU if c.cell == "gru" else nn.LSTM
        self.rnn = rnn(
            c.n_keys,
            c.n_hidden,
            num_layers=c.n_layer,
            batch_first=True,
            dropout=c.dropout if c.n_layer > 1 else 0.0,
        )
        if c.cell == "lstm":  # forget gates start open (biases sum to 1): memory from step one
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias_"):
                    nn.init.constant_(p[c.n_hidden : 2 * c.n_hidden], 0.5)  # gates i, f, g, o
        self.drop = nn.Dropout(c.dropout)
        # Most keys are silent: start every key near the usual rate (~4 of 88 down) so early
        # steps learn structure instead of pushing 88 biases down.
        self.visible = nn.Linear(c.n_hidden, c.n_keys)
        nn.init.constant_(self.visible.bias, -3.0)
        if c.head == "nade":
            self.hidden_bias = nn.Linear(c.n_hidden, c.nade_hidden)
            self.nade_w = nn.Parameter(torch.randn(c.n_keys, c.nade_hidden) * 0.05)  # v -> h
            self.nade_v = nn.Parameter(torch.randn(c.n_keys, c.nade_hidden) * 0.05)  # h -> logit

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def empty_state(self, batch: int = 1) -> State:
        c = self.config
        z = torch.zeros(c.n_layer, batch, c.n_hidden)
        return (z,) if c.cell == "gru" else (z, z.clone())

    def forward(
        self,
        frames: torch.Tensor,  # (B, S, K) float 0/1: the frames heard (or a partial frame)
        state: State | None = None,  # the state before frames[:, 0]; None: empty history
    ) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.empty_state(frames.shape[0])
        heard = frames
        if self.training and self.config.input_dropout > 0:  # the scored frames stay whole
            heard = frames * (torch.rand_like(frames) >= self.config.input_dropout)
        if self.config.cell == "gru":
            out, h = self.rnn(heard, state[0])  # out (B, S, H), h (L, B, H)
            new_state: State = (h,)
        else:
            out, (h, c) = self.rnn(heard, (state[0], state[1]))
            new_state = (h, c)
        # Frame s is conditioned on the top layer's output *before* it: the incoming state
        # for s = 0, the output after frame s-1 otherwise.
        cond = torch.cat([state[0][-1].unsqueeze(1), out[:, :-1]], dim=1)  # (B, S, H)
        return self.head_logits(self.drop(cond), frames), new_state

    def head_logits(self, cond: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Key logits (B, S, K); with the NADE head key i sees only frames[..., :i]."""
        bias_v = self.visible(cond)  # (B, S, K)
        if self.config.head == "sigmoid":
            return bias_v
        bias_h = self.hidden_bias(cond)  # (B, S, Hn)
        if torch.jit.is_tracing():  # ONNX export: static shapes, and a live step is one frame
            return bias_v + self._nade_dense(bias_h, frames)
        return bias_v + self._nade_segments(bias_h, frames)

    def _nade_dense(self, bias_h: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        contrib = frames.unsqueeze(-1) * self.nade_w  # (B, S, K, Hn)
        # Exclusive prefix sum over keys: key i's hidden units see keys 0..i-1 only.
        below = F.pad(torch.cumsum(contrib[:, :, :-1], dim=2), (0, 0, 1, 0))  # (B, S, K, Hn)
        hidden = torch.sigmoid(bias_h.unsqueeze(2) + below)  # (B, S, K, Hn)
        return (hidden * self.nade_v).sum(-1)  # (B, S, K)

    def _nade_segments(self, bias_h: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The same function, ~10x cheaper to train: key i's hidden units depend only on
        how many keys below it are down, so a frame with m keys down has m + 1 distinct
        hidden vectors, not K (frames hold at most ~15 of 88 keys)."""
        upto = torch.cumsum(frames, -1)  # (B, S, K) keys down at or below i
        segment = (upto - frames).long()  # (B, S, K) keys down strictly below i
        M = int(upto[..., -1].max()) + 1 if frames.numel() else 1
        m = torch.arange(M, dtype=frames.dtype).view(M, 1)
        # first[b, s, m, j] = 1 if key j is down and among the m lowest keys down
        first = frames.unsqueeze(-2) * (upto.unsqueeze(-2) <= m)  # (B, S, M, K)
        hidden = torch.sigmoid(bias_h.unsqueeze(-2) + first @ self.nade_w)  # (B, S, M, Hn)
        per_segment = hidden @ self.nade_v.T  # (B, S, M, K)
        return per_segment.gather(-2, segment.unsqueeze(-2)).squeeze(-2)  # (B, S, K)

    def frame_nll(
        self, frames: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Natural-log NLL of each whole frame given everything before it: (B, S)."""
        logits, new_state = self(frames, state)
        nll = F.binary_cross_entropy_with_logits(logits, frames, reduction="none").sum(-1)
        return nll, new_state


class PianoRollGRU(PianoRoll):
    def __init__(self, config: PianoRollConfig) -> None:
        super().__init__(replace(config, cell="gru"))


class PianoRollLSTM(PianoRoll):
    def __init__(self, config: PianoRollConfig) -> None:
        super().__init__(replace(config, cell="lstm"))
