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


class BufferAttention(torch.autograd.Function):
    """Attention over a fixed-capacity KV buffer, exported as one onnxruntime
    ``GroupQueryAttention`` node (num_heads == kv_num_heads: plain multi-head attention).

    The buffer form is what makes a decode step cost the same early and late in a context:
    the new keys and values are written into rows [T-S, T) of a buffer of ``capacity`` rows
    (T = ``seqlens_k`` + 1 tokens after this step) instead of concatenating a grown copy of
    the cache, and when the caller binds the same memory as past and present (the daemon
    does, through onnxruntime's IO binding) nothing is copied at all. Written out, the
    concatenating form also costs ~40 ONNX nodes per layer against this one.

    q, k, v: (B, S, C) with RoPE applied; past_*: (B, nh, capacity, hd); seqlens_k: (B,)
    int32, T - 1; total: int32 scalar, T. Every batch entry holds T tokens. ``forward`` is
    the reference (torch) semantics: a copy of the buffer with the new rows written, rows
    at and beyond T left as they were."""

    @staticmethod
    def forward(ctx, q, k, v, past_k, past_v, seqlens_k, total, n_head: int):  # type: ignore[no-untyped-def]
        B, S, C = q.shape
        T = int(seqlens_k[0]) + 1
        P = T - S

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, S, n_head, C // n_head).transpose(1, 2)

        k_all, v_all = past_k.clone(), past_v.clone()
        k_all[:, :, P:T], v_all[:, :, P:T] = heads(k), heads(v)
        att = (heads(q) @ k_all[:, :, :T].transpose(2, 3)) * (1.0 / math.sqrt(C // n_head))
        hidden = torch.arange(T).unsqueeze(0) > torch.arange(P, T).unsqueeze(1)  # causal
        y = att.masked_fill(hidden, float("-inf")).softmax(dim=3) @ v_all[:, :, :T]
        return y.transpose(1, 2).reshape(B, S, C), k_all, v_all

    @staticmethod
    def symbolic(g, q, k, v, past_k, past_v, seqlens_k, total, n_head):  # type: ignore[no-untyped-def]
        y, k_all, v_all = g.op(
            "com.microsoft::GroupQueryAttention",
            q,
            k,
            v,
            past_k,
            past_v,
            seqlens_k,
            total,
            num_heads_i=n_head,
            kv_num_heads_i=n_head,
            outputs=3,
        )
        # The exporter cannot infer a contrib op's output types; they are its inputs'.
        y.setType(q.type())
        k_all.setType(past_k.type())
        v_all.setType(past_v.type())
        return y, k_all, v_all


class _FastGelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        return F.gelu(x, approximate="tanh")

    @staticmethod
    def symbolic(g, x):  # type: ignore[no-untyped-def]
        y = g.op("com.microsoft::FastGelu", x)
        y.setType(x.type())
        return y


class TanhGelu(nn.Module):
    """GELU (tanh approximation); exported as onnxruntime's FastGelu, one node instead of
    the eight of its formula."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return _FastGelu.apply(x)
        return F.gelu(x, approximate="tanh")


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

    def buffered(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        past_k: torch.Tensor,
        past_v: torch.Tensor,
        lengths: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The KV-buffer form (``BufferAttention``). RoPE is applied in (B, S, heads, hd)
        layout, so q, k and v reach the fused kernel without a transpose."""
        B, S, C = x.shape
        cos, sin, rot = rope
        cos, sin = cos.transpose(1, 2).unsqueeze(2), sin.transpose(1, 2).unsqueeze(2)
        qk, v = self.qkv(x).view(B, S, 3, self.n_head, self.head_dim).split([2, 1], dim=2)
        q, k = apply_rope(qk, cos, sin, rot).split(1, dim=2)  # (B, S, 1, nh, hd) each
        y, k_all, v_all = BufferAttention.apply(
            q.reshape(B, S, C),
            k.reshape(B, S, C),
            v.reshape(B, S, C),
            past_k,
            past_v,
            *lengths,
            self.n_head,
        )
        return self.proj(y), k_all, v_all


class Block(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = Attention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd, bias=False),
            TanhGelu(),
            nn.Linear(4 * config.n_embd, config.n_embd, bias=False),
            nn.Dropout(config.dropout),
        )

    def forward(self, x, rope, mask, past_k=None, past_v=None, lengths=None):  # type: ignore[no-untyped-def]
        if lengths is not None:
            a, k, v = self.attn.buffered(self.ln1(x), rope, past_k, past_v, lengths)
        else:
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
        lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """``past`` is either the grown cache (concatenated to, the eager form) or, with
        ``lengths`` = (seqlens_k, total) given, fixed-capacity buffers written in place by
        rows (``BufferAttention``: the exported form)."""
        B, S = tokens.shape
        if positions is None:
            positions = torch.arange(S, device=tokens.device).unsqueeze(0).expand(B, S)
        cos, sin = rope_tables(positions, self.config.head_dim, self.config.rope_base)
        rope = (cos, sin, self.rot)
        mask = None
        if past is not None and lengths is None:
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
            x, k, v = block(x, rope, mask, pk, pv, lengths)
            present.append((k, v))
        logits = self.head(self.ln_f(x))  # (B, S, V)
        return logits, present

    def empty_cache(self, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        z = torch.zeros(batch, c.n_head, 0, c.head_dim)
        return [(z, z) for _ in range(c.n_layer)]
