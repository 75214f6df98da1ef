"""How each family's torch module becomes one ONNX graph: names, dynamic axes, dummies.

A graph adapter declares the signature once; export (``onnx_export``) and verification
(``verify``) are separate functions driven by that one declaration, as optimum's exporters
do. Adapters run the torch model on *named numpy inputs*, so the same code drives torch and
onnxruntime in parity checks and benchmarks. What every adapter provides:

- ``input_names``, ``output_names``, ``opset``, ``max_context``;
- ``signature()`` (the ONNX contract's graph signature, state pairs included);
- ``dynamic_axes()`` and ``wrapper()`` (a flat ``nn.Module`` taking the inputs in order);
- ``feed(seq, past, batch=1, seed=0)``: realistic inputs for ``seq`` new steps after a
  state that has seen ``past`` steps (verification runs lengths other than the export
  dummy; ``antiphon bench`` times ``feed(1, context)``);
- ``run(feed)``: the torch model on such inputs, outputs by name.

Adapters traced as one graph derive from ``FlatGraph``, which gives ``wrapper()`` (built
once by their ``_make_wrapper``) and ``run`` through it.

Optional: ``rollout(run, n)`` — a deterministic n-step decode through any ``run`` function
(torch or onnxruntime), compared for exact equality after export (token families get a
greedy decode without it); ``export_proto()`` — for graphs that are not one trace (an
encoder and a decoder step merged into one file).
"""

from __future__ import annotations

import abc
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from antiphon.contract import Signature, StatePair


class FlatGraph(abc.ABC):
    """What the single-trace adapters share: the flat export wrapper, built once by
    ``_make_wrapper``, and ``run`` through it (torch on named numpy inputs)."""

    input_names: list[str]
    output_names: list[str]
    input_dtype: Any = None  # inputs are cast to this first (None: as given)
    _flat: nn.Module | None = None

    def wrapper(self) -> nn.Module:
        if self._flat is None:
            self._flat = self._make_wrapper()
        return self._flat

    @abc.abstractmethod
    def _make_wrapper(self) -> nn.Module: ...

    @torch.no_grad()
    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [
            torch.from_numpy(np.asarray(feed[n], dtype=self.input_dtype)) for n in self.input_names
        ]
        outs = self.wrapper()(*args)
        return {n: t.numpy() for n, t in zip(self.output_names, outs)}


class TokenKVGraph(FlatGraph):
    """tokens[B,S] + positions[B,S] + cache lengths + K/V buffers per layer -> logits[B,S,V]
    + the buffers with the new rows written (``models.transformer.BufferAttention``)."""

    opset = 17
    custom_opsets = MappingProxyType({"com.microsoft": 1})  # GroupQueryAttention, FastGelu
    lengths = ("seqlens_k", "total_sequence_length")

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        c = model.config
        self.n_layer, self.n_head, self.head_dim = c.n_layer, c.n_head, c.head_dim
        self.vocab_size, self.max_context = c.vocab_size, c.block_size
        self.state_in = [f"past_{kv}_{i}" for i in range(self.n_layer) for kv in ("key", "value")]
        self.state_out = [n.replace("past_", "present_") for n in self.state_in]
        self.input_names = ["tokens", "positions", *self.lengths, *self.state_in]
        self.output_names = ["logits", *self.state_out]

    def signature(self) -> Signature:
        kv = ["batch", self.n_head, "capacity", self.head_dim]
        return Signature(
            inputs={
                "tokens": ["batch", "seq"],
                "positions": ["batch", "seq"],
                "seqlens_k": ["batch"],
                "total_sequence_length": [],
                **{n: kv for n in self.state_in},
            },
            outputs={
                "logits": ["batch", "seq", self.vocab_size],
                **{n: kv for n in self.state_out},
            },
            state=[
                StatePair(i, o, 2, kv, inplace=True) for i, o in zip(self.state_in, self.state_out)
            ],
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {
            "tokens": {0: "batch", 1: "seq"},
            "positions": {0: "batch", 1: "seq"},
            "seqlens_k": {0: "batch"},
            "logits": {0: "batch", 1: "seq"},
        }
        for n in [*self.state_in, *self.state_out]:
            axes[n] = {0: "batch", 2: "capacity"}
        return axes

    def _make_wrapper(self) -> nn.Module:
        graph = self

        class Flat(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = graph.model

            def forward(self, tokens, positions, seqlens_k, total, *past):  # type: ignore[no-untyped-def]
                pairs = [(past[2 * i], past[2 * i + 1]) for i in range(graph.n_layer)]
                logits, present = self.model(tokens, positions, pairs, (seqlens_k, total))
                return (logits, *[t for kv in present for t in kv])

        return Flat().eval()

    def feed(self, seq: int, past: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs for given sequence and cache lengths (buffers filled by a real prefill)."""
        rng = np.random.default_rng(seed)
        state = self.empty_state(batch)
        if past:
            prefix = rng.integers(0, self.vocab_size, size=(batch, past))
            out = self.run({**self._step(prefix, 0), **state})
            state = {i: out[o] for i, o in zip(self.state_in, self.state_out)}
        tokens = rng.integers(0, self.vocab_size, size=(batch, seq))
        return {**self._step(tokens, past), **state}

    def _step(self, tokens: np.ndarray, held: int) -> dict[str, np.ndarray]:
        batch, seq = tokens.shape
        return {
            "tokens": tokens,
            "positions": _positions(batch, held, seq),
            "seqlens_k": np.full(batch, held + seq - 1, dtype=np.int32),
            "total_sequence_length": np.asarray(held + seq, dtype=np.int32),
        }

    def empty_state(self, batch: int = 1) -> dict[str, np.ndarray]:
        z = np.zeros((batch, self.n_head, self.max_context, self.head_dim), dtype=np.float32)
        return {n: z for n in self.state_in}


def _positions(batch: int, start: int, length: int) -> np.ndarray:
    return np.broadcast_to(np.arange(start, start + length, dtype=np.int64), (batch, length)).copy()


def graph_for(family_name: str, model: nn.Module) -> Any:
    from antiphon.models.registry import family, resolve

    return resolve(family(family_name).adapter)(model)
