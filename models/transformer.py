"""A GPT-style decoder over miditok tokens, with a KV cache for incremental decoding.

nanoGPT-sized: pre-norm blocks, rotary position embeddings (RoPE), tied input/output
embeddings. RoPE is what lets the daemon slide its window: attention depends only on the
distance between tokens, so cached keys stay valid when the oldest entries are dropped and
positions keep counting up past ``block_size``.

The cache is explicit: ``forward(tokens, positions, past)`` returns the logits and the new
cache, so the same graph serves prompt prefill (S > 1) and per-token decoding (S = 1), in torch
and once exported to ONNX.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TransformerConfig:
    vocab_size: int = 278
    block_size: int = 512  # longest context trained on; the daemon's window
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.1
    rope_base: float = 10000.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TransformerConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def rope_tables(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, ...]:
    """cos/sin for positions (B, S) -> (B, 1, S, head_dim/2) each."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # (B, S, hd/2)
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, nh, S, hd/2)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.dropout = config.dropout

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        past_k: torch.Tensor | None,
        past_v: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, S, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, S, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, S, hd)
        k = k.view(B, S, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, S, self.n_head, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if past_k is None or past_v is None:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        else:
            k = torch.cat([past_k, k], dim=2)  # (B, nh, P+S, hd)
            v = torch.cat([past_v, v], dim=2)
            # Query i sits at cache position P+i and may see keys 0..P+i.
            P = k.shape[2] - S
            q_idx = torch.arange(S, device=x.device).unsqueeze(1) + P
            k_idx = torch.arange(k.shape[2], device=x.device).unsqueeze(0)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=k_idx <= q_idx)
        y = y.transpose(1, 2).reshape(B, S, C)
        return self.proj(y), k, v


class Block(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = Attention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd, bias=False),
            nn.GELU(approximate="tanh"),
            nn.Linear(4 * config.n_embd, config.n_embd, bias=False),
            nn.Dropout(config.dropout),
        )

    def forward(self, x, cos, sin, past_k=None, past_v=None):  # type: ignore[no-untyped-def]
        a, k, v = self.attn(self.ln1(x), cos, sin, past_k, past_v)
        x = x + a
        x = x + self.mlp(self.ln2(x))
        return x, k, v


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # weight tying
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        tokens: torch.Tensor,  # (B, S) int64
        positions: torch.Tensor | None = None,  # (B, S) int64; default 0..S-1
        past: list[tuple[torch.Tensor, torch.Tensor]] | None = None,  # per layer (B, nh, P, hd)
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        B, S = tokens.shape
        if positions is None:
            positions = torch.arange(S, device=tokens.device).unsqueeze(0).expand(B, S)
        cos, sin = rope_tables(positions, self.config.head_dim, self.config.rope_base)
        x = self.drop(self.wte(tokens))  # (B, S, C)
        present = []
        for i, block in enumerate(self.blocks):
            pk, pv = past[i] if past is not None else (None, None)
            x, k, v = block(x, cos, sin, pk, pv)
            present.append((k, v))
        logits = self.head(self.ln_f(x))  # (B, S, V)
        return logits, present

    def empty_cache(self, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        z = torch.zeros(batch, c.n_head, 0, c.head_dim)
        return [(z, z) for _ in range(c.n_layer)]
