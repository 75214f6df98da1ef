"""An encoder-decoder over miditok tokens: a bidirectional LSTM reads the context, an LSTM
decoder (with dot-product attention over the encoder's outputs) continues it.

The encoder is 2 bidirectional layers (1024 units per direction in the original; scaled
down by default so it trains on 2 cores; the published size is
``antiphon train --arch seq2seq --set encoder_hidden=1024 --set decoder_hidden=1024``). Its
final forward and backward states, per layer, are bridged into the decoder's initial state.
The decoder is trained with teacher forcing and generates one token at a time; its
dot-product attention over the encoded context is added to its output, without input
feeding, so the teacher-forced decoder is one LSTM call over the whole continuation and a
decoder step needs nothing but its (h, c) state and the encoded context.

A token window ``x`` is split into a context ``x[:k]`` the encoder reads and a continuation
the decoder predicts. The decoder's first input is the last context token ``x[k-1]`` (it
predicts ``x[k]``), which is exactly what the live voice does: encode what was heard, then
feed its last token to the decoder and sample.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (L, B, Hd)


@dataclass
class Seq2SeqConfig:
    vocab_size: int = 278
    block_size: int = 512  # longest window trained on; the daemon's context for the encoder
    n_layer: int = 2  # encoder and decoder layers
    n_embd: int = 128  # token embedding, shared by encoder and decoder
    # Per direction; 1024 in the original. 256/512 (7M parameters) trains at ~1 s per step
    # of 8x512 tokens on 2 idle cores; at 128/256 the per-step ONNX speed-up over torch
    # (~3x) is eaten by fixed per-op costs, at 256/512 the LSTM dominates (3.3-4.8x).
    encoder_hidden: int = 256
    decoder_hidden: int = 512
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Seq2SeqConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        drop = c.dropout if c.n_layer > 1 else 0.0
        self.embed = nn.Embedding(c.vocab_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.LSTM(
            c.n_embd, c.encoder_hidden, c.n_layer, batch_first=True, bidirectional=True,
            dropout=drop,
        )  # fmt: skip
        # Each layer's final (forward, backward) states -> that decoder layer's initial state.
        self.bridge_h = nn.Linear(2 * c.encoder_hidden, c.decoder_hidden)
        self.bridge_c = nn.Linear(2 * c.encoder_hidden, c.decoder_hidden)
        self.decoder = nn.LSTM(
            c.n_embd, c.decoder_hidden, c.n_layer, batch_first=True, dropout=drop
        )
        # Encoder outputs projected once into the decoder's space serve as keys and values.
        self.memory_proj = nn.Linear(2 * c.encoder_hidden, c.decoder_hidden, bias=False)
        self.attend = nn.Linear(c.decoder_hidden, c.decoder_hidden)
        self.head = nn.Linear(c.decoder_hidden, c.vocab_size)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, context: torch.Tensor) -> tuple[torch.Tensor, State]:
        """context (B, K) -> memory (B, K, Hd) and the decoder's initial (h, c)."""
        c = self.config
        B = context.shape[0]
        out, (h, cell) = self.encoder(self.drop(self.embed(context)))  # out (B, K, 2He)
        # h, cell: (2L, B, He) ordered layer-major, forward before backward.
        h = h.view(c.n_layer, 2, B, c.encoder_hidden).transpose(1, 2).reshape(c.n_layer, B, -1)
        cell = cell.view(c.n_layer, 2, B, c.encoder_hidden).transpose(1, 2)
        cell = cell.reshape(c.n_layer, B, -1)  # (L, B, 2He)
        state = (torch.tanh(self.bridge_h(h)), self.bridge_c(cell))  # (L, B, Hd) each
        return self.memory_proj(out), state  # memory (B, K, Hd)

    def decode(
        self, tokens: torch.Tensor, memory: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        """tokens (B, T) after ``state`` -> logits (B, T, V) and the state after them.
        Equal for one call over T tokens and T calls over one (no input feeding)."""
        out, state = self.decoder(self.drop(self.embed(tokens)), state)  # (B, T, Hd)
        scores = out @ memory.transpose(1, 2) / math.sqrt(out.shape[-1])  # (B, T, K)
        context = F.softmax(scores, dim=-1) @ memory  # (B, T, Hd)
        # Added to the decoder's output rather than mixed through tanh(W[out; context]):
        # that saturated early in training (the decoder output went constant, the loss
        # stalled at the unigram level); the residual path cannot.
        out = out + self.attend(context)  # (B, T, Hd)
        return self.head(self.drop(out)), (state[0], state[1])

    def forward(self, context: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Teacher-forced: encode ``context`` (B, K), decode ``tokens`` (B, T) -> (B, T, V)."""
        memory, state = self.encode(context)
        return self.decode(tokens, memory, state)

    def split_logits(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The encoder reads x[:, :k]; logits (B, S-k+1, V) for rows k-1..S-1 of x, row i
        predicting x[i+1] (decoder inputs x[k-1:])."""
        return self(x[:, :k], x[:, k - 1 :])[0]

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-entropy of the continuation after a random split point.
        One split per batch keeps every sequence the same length (no packing); uniform over
        1..S covers short contexts (the start of a session) to a full window."""
        S = x.shape[1]
        k = int(torch.randint(1, S + 1, ()).item())
        logits = self.split_logits(x, k)  # (B, S-k+1, V)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y[:, k - 1 :].reshape(-1))

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, V) next-token log-probs for every row of a window, each conditioned on
        exactly the tokens before it in the window, like a decoder-only model's: rows from
        the middle on come from the encoder reading the first half and the decoder scoring
        the rest; the rows before (scored only in a piece's first window by ``models.nll``,
        whose later windows score their second half) from the encoder reading the first
        token alone. So the validation NLL is a true causal NLL, comparable across families."""
        S = x.shape[1]
        k = max(1, S // 2)
        parts = [self.split_logits(x[:, : k - 1], 1)] if k > 1 else []
        parts.append(self.split_logits(x, k))
        return F.log_softmax(torch.cat(parts, dim=1).float(), dim=-1)
