"""Token RNN, GRU and LSTM over miditok tokens: the recurrent state is the whole memory.

embedding -> stacked ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` -> dropout -> linear head, the head
tied to the embedding when their sizes agree (Press & Wolf 2017; PyTorch's
word_language_model). One module serves the three families; the ``cell`` field picks the
layer, and each family's config subclass fixes it so ``antiphon train --arch token-lstm``
cannot build a GRU. ``torch.nn`` recurrent layers export to the ONNX RNN/GRU/LSTM operators,
which onnxruntime runs as fused kernels.

The state is explicit: ``forward(tokens, state)`` returns the logits and the new state
(``h`` [layers, B, H], plus ``c`` for an LSTM), so training (a zero state per window), prompt
prefill and per-token decoding in the daemon are one code path, in torch and in ONNX. Unlike
a KV cache the state has a fixed size and is never slid: it carries everything heard since
the voice began, however long ago. The defaults (2 x 256) train on 2 cores; Performance RNN's
3 x 512 LSTM (Oore et al. 2018) is ``n_layer=3, n_hidden=512, n_embd=512``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from antiphon.errors import UserError

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

RecurrentState = tuple[torch.Tensor, ...]  # (h,) or (h, c), each (layers, B, H)


@dataclass
class TokenRNNConfig:
    vocab_size: int = 278
    block_size: int = 512  # training window; the state itself is unbounded
    cell: str = "gru"  # "rnn" (tanh) | "gru" | "lstm"
    n_layer: int = 2
    n_embd: int = 256
    n_hidden: int = 256
    dropout: float = 0.1  # on the embedding, between layers and before the head
    tie_weights: bool = True  # effective when n_embd == n_hidden

    # A family's subclass fixes the cell; None accepts any.
    family_cell: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise UserError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if self.family_cell is not None and self.cell != self.family_cell:
            raise UserError(
                f"token-{self.family_cell} is a {self.family_cell} model; for cell={self.cell!r} "
                f"train with --arch token-{self.cell}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TokenRNNConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def tied(self) -> bool:
        return self.tie_weights and self.n_embd == self.n_hidden

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.cell == "lstm" else ("h",)


@dataclass
class PlainRNNConfig(TokenRNNConfig):
    cell: str = "rnn"
    family_cell: ClassVar[str | None] = "rnn"


@dataclass
class GRUConfig(TokenRNNConfig):
    cell: str = "gru"
    family_cell: ClassVar[str | None] = "gru"


@dataclass
class LSTMConfig(TokenRNNConfig):
    cell: str = "lstm"
    family_cell: ClassVar[str | None] = "lstm"


class TokenRNN(nn.Module):
    def __init__(self, config: TokenRNNConfig) -> None:
        super().__init__()
        c = self.config = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.rnn = CELLS[c.cell](
            c.n_embd,
            c.n_hidden,
            num_layers=c.n_layer,
            batch_first=True,
            dropout=c.dropout if c.n_layer > 1 else 0.0,
        )
        self.head = nn.Linear(c.n_hidden, c.vocab_size)
        # Small uniform embeddings: with a tied head, N(0, 1) rows would give logits of
        # size ~sqrt(H) at initialisation.
        nn.init.uniform_(self.wte.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)
        if c.tied:
            self.head.weight = self.wte.weight
        else:
            nn.init.uniform_(self.head.weight, -0.1, 0.1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def empty_state(self, batch: int = 1) -> RecurrentState:
        c = self.config
        return tuple(torch.zeros(c.n_layer, batch, c.n_hidden) for _ in c.state_names)

    def forward(
        self,
        tokens: torch.Tensor,  # (B, S) int64
        state: RecurrentState | None = None,  # (h,) or (h, c), each (L, B, H); None: zeros
    ) -> tuple[torch.Tensor, RecurrentState]:
        if state is None:
            state = self.empty_state(tokens.shape[0])
        x = self.drop(self.wte(tokens))  # (B, S, E)
        hx = (state[0], state[1]) if self.config.cell == "lstm" else state[0]
        y, new = self.rnn(x, hx)  # (B, S, H)
        logits = self.head(self.drop(y))  # (B, S, V)
        return logits, tuple(new) if isinstance(new, tuple) else (new,)
