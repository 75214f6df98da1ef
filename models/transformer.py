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
    n_embd: int = 192
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
    """cos/sin for positions (B, S) -> (B, 1, S, head_dim) each, pairs of dims sharing a
    frequency (the interleaved RoPE layout)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # (B, S, hd/2)
    angles = angles.repeat_interleave(2, dim=-1).unsqueeze(1)  # (B, 1, S, hd)
    return angles.cos(), angles.sin()


def rotation(head_dim: int) -> torch.Tensor:
    """R with (x @ R) = (-x1, x0, -x3, x2, ...): RoPE's rotation as one matmul, which keeps
    the exported graph small (slicing and re-interleaving cost a dozen nodes per layer)."""
    r = torch.zeros(head_dim, head_dim)
    for i in range(0, head_dim, 2):
        r[i + 1, i] = -1.0
        r[i, i + 1] = 1.0
    return r


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rot: torch.Tensor
) -> torch.Tensor:
    return x * cos + (x @ rot) * sin


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
        rope: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        past_k: torch.Tensor | None,
        past_v: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, S, C = x.shape
        qkv = self.qkv(x).view(B, S, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        qk = apply_rope(qkv[:2], *rope)  # q and k at once: (2, B, nh, S, hd)
        q, k, v = qk[0], qk[1], qkv[2]
        if past_k is None or past_v is None:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        else:
            k = torch.cat([past_k, k], dim=2)  # (B, nh, P+S, hd)
            v = torch.cat([past_v, v], dim=2)
            # Written out rather than SDPA: its export recomputes the scale from shapes
            # and checks for NaN rows in every layer, doubling a decode step's node count.
            # Axes are spelled out: the exporter lost a transpose(-2, -1) here.
            att = (q @ k.transpose(2, 3)) * (1.0 / math.sqrt(self.head_dim)) + mask
            y = att.softmax(dim=3) @ v  # (B, nh, S, hd)
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

    def forward(self, x, rope, mask, past_k=None, past_v=None):  # type: ignore[no-untyped-def]
        a, k, v = self.attn(self.ln1(x), rope, mask, past_k, past_v)
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
        # Not part of the state dict: derived from the config, identical everywhere.
        self.register_buffer("rot", rotation(config.head_dim), persistent=False)
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
        rope = (cos, sin, self.rot)
        mask = None
        if past is not None:
            # Query i sits at cache position P+i and may see keys 0..P+i (once for all layers).
            P = past[0][0].shape[2]
            q_idx = torch.arange(S, device=tokens.device).unsqueeze(1) + P
            visible = torch.arange(P + S, device=tokens.device).unsqueeze(0) <= q_idx  # (S, P+S)
            mask = torch.zeros(visible.shape, device=tokens.device).masked_fill(
                ~visible, float("-inf")
            )
        x = self.drop(self.wte(tokens))  # (B, S, C)
        present = []
        for i, block in enumerate(self.blocks):
            pk, pv = past[i] if past is not None else (None, None)
            x, k, v = block(x, rope, mask, pk, pv)
            present.append((k, v))
        logits = self.head(self.ln_f(x))  # (B, S, V)
        return logits, present

    def empty_cache(self, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        z = torch.zeros(batch, c.n_head, 0, c.head_dim)
        return [(z, z) for _ in range(c.n_layer)]
