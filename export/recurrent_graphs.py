"""Export adapters for token models with a fixed-size state: RNN/GRU/LSTM hidden states and
the causal convolution's buffers (the contract is in ``export.graphs``).

Graph: ``tokens[B,S]`` + state inputs -> ``logits[B,S,V]`` + state outputs of the same
shapes, each declared a ``StatePair`` with ``axis=-1``: the daemon's ``TokenStepper`` feeds
outputs back as inputs and never slides them, so the state carries everything the voice has
heard, however long ago (a recurrent model has no window to slide). ``max_context`` is the
training window: the longest stretch the model learned from, and the most of a long prompt
the stepper feeds at once. No positions input: these models have no notion of absolute
position.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from antiphon.contract import Signature, StatePair
from antiphon.export.cells import StepGraph, gru_step
from antiphon.export.graphs import FlatGraph


class FixedStateGraph(FlatGraph):
    """tokens[B,S] + fixed-size state -> logits[B,S,V] + new state (same names, _in -> _out).

    Subclasses set ``state_in``, ``state_out`` and ``state_shapes`` (ints and "batch")."""

    opset = 17
    state_in: list[str]
    state_out: list[str]
    state_shapes: list[list[Any]]

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        c = model.config
        self.vocab_size, self.max_context = c.vocab_size, c.block_size
        self.input_names = ["tokens", *self.state_in]
        self.output_names = ["logits", *self.state_out]

    def signature(self) -> Signature:
        shapes = dict(zip(self.state_in, self.state_shapes))
        return Signature(
            inputs={"tokens": ["batch", "seq"], **shapes},
            outputs={
                "logits": ["batch", "seq", self.vocab_size],
                **{o: s for o, s in zip(self.state_out, self.state_shapes)},
            },
            state=[
                StatePair(i, o, -1, s)
                for i, o, s in zip(self.state_in, self.state_out, self.state_shapes)
            ],
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {
            "tokens": {0: "batch", 1: "seq"},
            "logits": {0: "batch", 1: "seq"},
        }
        for i, o, s in zip(self.state_in, self.state_out, self.state_shapes):
            axes[i] = axes[o] = {s.index("batch"): "batch"}
        return axes

    def _make_wrapper(self) -> nn.Module:
        graph = self

        class Flat(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = graph.model

            def forward(self, tokens, *state):  # type: ignore[no-untyped-def]
                logits, new = self.model(tokens, graph.to_model_state(list(state)))
                return (logits, *new)

        return Flat().eval()

    def to_model_state(self, arrays: list[torch.Tensor]) -> Any:
        return arrays

    def empty_state(self, batch: int = 1) -> dict[str, np.ndarray]:
        return {
            n: np.zeros([batch if d == "batch" else d for d in s], dtype=np.float32)
            for n, s in zip(self.state_in, self.state_shapes)
        }

    def feed(self, seq: int, past: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs for ``seq`` new tokens after a state warmed by a real run over ``past``."""
        rng = np.random.default_rng(seed)
        prefix = rng.integers(0, self.vocab_size, size=(batch, past))
        state = self.empty_state(batch)
        if past:
            out = self.run({"tokens": prefix, **state})
            state = {i: out[o] for i, o in zip(self.state_in, self.state_out)}
        return {"tokens": rng.integers(0, self.vocab_size, size=(batch, seq)), **state}


class TokenRNNGraph(FixedStateGraph):
    """State ``h_in``/``h_out`` [layers, B, H] (and ``c_in``/``c_out`` for an LSTM)."""

    def __init__(self, model: nn.Module) -> None:
        c = model.config
        self.state_in = [f"{n}_in" for n in c.state_names]
        self.state_out = [f"{n}_out" for n in c.state_names]
        self.state_shapes = [[c.n_layer, "batch", c.n_hidden] for _ in c.state_names]
        super().__init__(model)

    def to_model_state(self, arrays: list[torch.Tensor]) -> Any:
        return tuple(arrays)

    def step_graph(self) -> StepGraph | None:
        """A GRU's single-step form with its gates written out, which int8 quantization
        reaches (``export.cells``); None for the RNN and LSTM, whose fp32 graphs suffice."""
        if self.model.config.cell != "gru":
            return None
        return StepGraph(self, _TokenGRUStep(self.model), ("tokens", "logits"))


class _TokenGRUStep(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model  # initializer names stay "model.<state_dict key>"

    def forward(self, tokens: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, new = gru_step(self.model.rnn, self.model.wte(tokens[:, 0]), h)
        # The head on (B, 1, H), as in the sequence graph: a MatMul of a transposed weight,
        # which quantizes under the weight's own name (a 2-D input would trace to Gemm).
        return self.model.head(y.unsqueeze(1)), new


class TCNGraph(FixedStateGraph):
    """State ``buf_in_i``/``buf_out_i`` [B, (k-1)*d_i, C]: block i's last convolution inputs."""

    def __init__(self, model: nn.Module) -> None:
        c = model.config
        n = len(c.buffer_sizes)
        self.state_in = [f"buf_in_{i}" for i in range(n)]
        self.state_out = [f"buf_out_{i}" for i in range(n)]
        self.state_shapes = [["batch", p, c.n_embd] for p in c.buffer_sizes]
        super().__init__(model)
