"""A causal convolutional model over miditok tokens (TCN / WaveNet style), with
incremental inference.

Token embeddings pass through residual blocks of dilated causal 1-D convolutions
(pre-norm; WaveNet's gated ``tanh * sigmoid`` units, or ReLU as in Bai et al.'s TCN), with
dilations 1, 2, 4, ... restarting every ``dilation_cycle`` layers (WaveNet stacks), then a
head tied to the embedding. A block with kernel k and dilation d looks (k-1)*d steps back, so
the receptive field is ``1 + sum((k-1)*d)``: 511 tokens for the defaults, about the training
window. WaveNet's own stacks are ``kernel_size=2, n_layer=30, dilation_cycle=10,
n_embd=256``.

Incremental inference: each block keeps the last (k-1)*d inputs of its convolution as a
buffer. ``forward(tokens, state)`` prepends the buffers to the new inputs instead of zero
padding, convolves without padding, and returns the buffers' new contents, so the daemon
steps one token for O(layers) arithmetic, not O(receptive field) (the state in and out is a
fixed-size copy: 0.4 MB each way for the defaults). Training runs the same code with zero
buffers, which is exactly causal zero padding: the full and the incremental paths are one
computation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from antiphon.errors import UserError

Buffers = list[torch.Tensor]  # per block (B, (k-1)*d, C)


@dataclass
class TCNConfig:
    vocab_size: int = 278
    block_size: int = 512  # training window; the state itself is unbounded
    n_embd: int = 192  # residual channels
    n_layer: int = 8
    kernel_size: int = 3
    dilation_cycle: int = 8  # dilation of block i: 2 ** (i % dilation_cycle)
    gated: bool = True  # WaveNet's tanh * sigmoid units; False: ReLU
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.kernel_size < 2:
            raise UserError("kernel_size must be at least 2 (a causal convolution looks back)")
        if self.n_layer < 1 or self.dilation_cycle < 1:
            raise UserError("n_layer and dilation_cycle must be positive")

    def to_dict(self) -> dict:
        # The receptive field is derived; it is written out so a checkpoint's or an ONNX
        # file's config states it, and ignored when read back.
        return {**asdict(self), "receptive_field": self.receptive_field}

    @classmethod
    def from_dict(cls, d: dict) -> TCNConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def dilations(self) -> list[int]:
        return [2 ** (i % self.dilation_cycle) for i in range(self.n_layer)]

    @property
    def buffer_sizes(self) -> list[int]:
        return [(self.kernel_size - 1) * d for d in self.dilations]

    @property
    def receptive_field(self) -> int:
        return 1 + sum(self.buffer_sizes)


class CausalBlock(nn.Module):
    """Pre-norm residual block around one dilated causal convolution.

    The convolution is written as a linear map over its k taps (the inputs t, t-d, ...,
    t-(k-1)d, concatenated): the same function as ``nn.Conv1d`` with its weight laid out as
    ``(out, k*C)``, channel-last so no transposes are needed. torch routes a dilated
    ``Conv1d`` on a few columns (one decoding step) to a naive kernel ~20x slower than a
    matmul; as a matmul, every path (training batches, prefill, one step) and both engines
    run a plain GEMM."""

    def __init__(self, config: TCNConfig, dilation: int) -> None:
        super().__init__()
        C, k = config.n_embd, config.kernel_size
        self.gated = config.gated
        self.dilation, self.taps = dilation, k
        self.context = (k - 1) * dilation
        self.norm = nn.LayerNorm(C)
        self.conv = nn.Linear(k * C, 2 * C if config.gated else C)  # tap j: columns j*C..
        self.proj = nn.Linear(C, C)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([buf, self.norm(x)], dim=1)  # (B, P+S, C): the buffer stands in for padding
        new_buf = h[:, -self.context :]  # (B, P, C)
        # Output t (at h index P+t) sees h[t + j*d], j = 0..k-1 (oldest first). Offsets from
        # both ends keep every slice bound a constant in the exported graph.
        d, last = self.dilation, self.taps - 1
        taps = [h[:, j * d : (j - last) * d] for j in range(last)] + [h[:, last * d :]]
        h = self.conv(torch.cat(taps, dim=-1))  # (B, S, k*C) -> (B, S, 2C or C)
        if self.gated:
            a, b = h.split(h.shape[-1] // 2, dim=-1)
            h = torch.tanh(a) * torch.sigmoid(b)  # (B, S, C)
        else:
            h = F.relu(h)
        return x + self.drop(self.proj(h)), new_buf


class TCN(nn.Module):
    def __init__(self, config: TCNConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(CausalBlock(config, d) for d in config.dilations)
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # weight tying
        nn.init.normal_(self.wte.weight, 0.0, 0.02)
        for block in self.blocks:
            # GPT-2's scaled residual init: the sum over blocks starts near the embedding.
            nn.init.normal_(block.proj.weight, 0.0, 0.02 / math.sqrt(2 * config.n_layer))
            nn.init.zeros_(block.proj.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def empty_state(self, batch: int = 1) -> Buffers:
        C = self.config.n_embd
        return [torch.zeros(batch, p, C) for p in self.config.buffer_sizes]

    def forward(
        self,
        tokens: torch.Tensor,  # (B, S) int64
        state: Buffers | None = None,  # per block (B, (k-1)*d, C); None: zeros (a fresh start)
    ) -> tuple[torch.Tensor, Buffers]:
        if state is None:
            state = self.empty_state(tokens.shape[0])
        x = self.drop(self.wte(tokens))  # (B, S, C)
        new_state = []
        for block, buf in zip(self.blocks, state):
            x, buf = block(x, buf)
            new_state.append(buf)
        logits = self.head(self.ln_f(x))  # (B, S, V)
        return logits, new_state
