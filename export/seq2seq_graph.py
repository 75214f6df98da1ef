"""The encoder-decoder as one ONNX file holding two graphs: the encoder and a decoder step.

Inputs ``context[B,K]`` (encoder) and ``tokens[B,T] + memory[B,M,Hd] + past_h/past_c
[L,B,Hd]`` (decoder); outputs ``encoded[B,K,Hd] + init_h/init_c`` and ``logits[B,T,V] +
present_h/present_c``. onnxruntime requires every input and runs every node whatever outputs
are asked for, so each half sits in an ``If`` that runs it only when its input is non-empty
(an empty ``context`` or ``tokens`` yields empty outputs and passes the state through): the
daemon's decoder step feeds an empty context and pays nothing for the encoder.

Both halves are traced with the TorchScript exporter exactly as ``export.onnx_export`` traces
one graph (initializer names = state_dict keys, so ``export.reload`` still rebuilds the torch
model), then become the branches of the two ``If`` nodes, their weights shared at top level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from antiphon.contract import Signature, StatePair
from antiphon.live.seq2seq_voice import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    Seq2SeqStepper,
    greedy,
)

ROLLOUT_PROMPT = [1, *range(4, 20)]


class _Part:
    """One half, shaped like a graph adapter so ``export_graph`` traces it unchanged."""

    def __init__(
        self,
        opset: int,
        inputs: list[str],
        outputs: list[str],
        axes: dict[str, dict[int, str]],
        module: nn.Module,
        dummy: Callable[[], dict[str, np.ndarray]],
    ) -> None:
        self.opset, self.input_names, self.output_names = opset, inputs, outputs
        self._axes, self._module, self._dummy = axes, module, dummy

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return self._axes

    def wrapper(self) -> nn.Module:
        return self._module

    def feed(self, seq: int, past: int) -> dict[str, np.ndarray]:
        return self._dummy()


class Seq2SeqGraph:
    opset = 17

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        c = model.config
        self.n_layer, self.hidden, self.vocab_size = c.n_layer, c.decoder_hidden, c.vocab_size
        self.max_context = c.block_size
        self.input_names = [*ENCODER_INPUTS, *DECODER_INPUTS]
        self.output_names = [*ENCODER_OUTPUTS, *DECODER_OUTPUTS]

    # -- the declaration ---------------------------------------------------------------------
    def signature(self) -> Signature:
        state = [self.n_layer, "batch", self.hidden]
        return Signature(
            inputs={
                "context": ["batch", "context"],
                "tokens": ["batch", "seq"],
                "memory": ["batch", "memory", self.hidden],
                "past_h": state,
                "past_c": state,
            },
            outputs={
                "encoded": ["batch", "context", self.hidden],
                "init_h": state,
                "init_c": state,
                "logits": ["batch", "seq", self.vocab_size],
                "present_h": state,
                "present_c": state,
            },
            # The encoded context (``memory``) is fixed while decoding: not a state pair.
            state=[
                StatePair("past_h", "present_h", -1, state),
                StatePair("past_c", "present_c", -1, state),
            ],
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        sig = self.signature()
        return {
            name: {i: d for i, d in enumerate(shape) if isinstance(d, str)}
            for name, shape in {**sig.inputs, **sig.outputs}.items()
        }

    # -- torch on named numpy inputs -------------------------------------------------------------
    def _encode(self, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if context.shape[1] == 0:  # as the graph's empty branch
            B = context.shape[0]
            zeros = torch.zeros(self.n_layer, B, self.hidden)
            return torch.zeros(B, 0, self.hidden), zeros, zeros.clone()
        memory, (h, c) = self.model.encode(context)
        return memory, h, c

    def _decode(self, tokens, memory, past_h, past_c) -> tuple[torch.Tensor, ...]:  # type: ignore[no-untyped-def]
        if tokens.shape[1] == 0:
            return torch.zeros(tokens.shape[0], 0, self.vocab_size), past_h, past_c
        logits, (h, c) = self.model.decode(tokens, memory, (past_h, past_c))
        return logits, h, c

    @torch.no_grad()
    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = {n: torch.from_numpy(np.asarray(feed[n])) for n in self.input_names}
        outs = (*self._encode(t["context"]), *self._decode(*(t[n] for n in DECODER_INPUTS)))
        return {n: o.numpy() for n, o in zip(self.output_names, outs)}

    def feed(self, seq: int, past: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """``seq`` decoder tokens after a real encoding of ``past + 1`` tokens, plus ``seq - 1``
        tokens for the encoder: a single step (seq=1) encodes nothing, as in the daemon, and
        longer feeds check the encoder at other lengths too."""
        rng = np.random.default_rng(seed)
        heard = rng.integers(0, self.vocab_size, size=(batch, past + 1))
        enc = self.run(
            {
                "context": heard,
                "tokens": np.zeros((batch, 0), dtype=np.int64),
                "memory": np.zeros((batch, 0, self.hidden), dtype=np.float32),
                "past_h": np.zeros((self.n_layer, batch, self.hidden), dtype=np.float32),
                "past_c": np.zeros((self.n_layer, batch, self.hidden), dtype=np.float32),
            }
        )
        return {
            "context": rng.integers(0, self.vocab_size, size=(batch, seq - 1)),
            "tokens": rng.integers(0, self.vocab_size, size=(batch, seq)),
            "memory": enc["encoded"],
            "past_h": enc["init_h"],
            "past_c": enc["init_c"],
        }

    def rollout(self, run: Callable[[dict], dict], n: int) -> list[int]:
        """n greedy tokens after a fixed prompt, through the daemon's own stepping code."""
        stepper = Seq2SeqStepper(run, self.signature(), self.max_context)
        return greedy(stepper, [t % self.vocab_size for t in ROLLOUT_PROMPT], n)

    # -- export ----------------------------------------------------------------------------------
    def _parts(self) -> tuple[_Part, _Part]:
        graph = self

        class Encoder(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = graph.model

            def forward(self, context):  # type: ignore[no-untyped-def]
                memory, (h, c) = self.model.encode(context)
                return memory, h, c

        class Decoder(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = graph.model

            def forward(self, tokens, memory, past_h, past_c):  # type: ignore[no-untyped-def]
                logits, (h, c) = self.model.decode(tokens, memory, (past_h, past_c))
                return logits, h, c

        axes = self.dynamic_axes()
        dummy = self.feed(seq=3, past=2)
        dummy["context"] = np.arange(4, dtype=np.int64)[None] % self.vocab_size
        encoder = _Part(
            self.opset, ENCODER_INPUTS, ENCODER_OUTPUTS,
            {n: axes[n] for n in ENCODER_INPUTS + ENCODER_OUTPUTS},
            Encoder().eval(), lambda: {"context": dummy["context"]},
        )  # fmt: skip
        decoder = _Part(
            self.opset, DECODER_INPUTS, DECODER_OUTPUTS,
            {n: axes[n] for n in DECODER_INPUTS + DECODER_OUTPUTS},
            Decoder().eval(), lambda: {n: dummy[n] for n in DECODER_INPUTS},
        )  # fmt: skip
        return encoder, decoder

    def _empty_encoding(self, p: str) -> tuple[list[onnx.NodeProto], list[str]]:
        """An empty context encodes to an empty memory and a zero initial state."""
        batch = f"{p}batch"
        return [
            helper.make_node("Shape", ["context"], [batch], start=0, end=1),
            *_zeros(p, "encoded", batch, [None, 0, self.hidden]),
            *_zeros(p, "init_h", batch, [self.n_layer, None, self.hidden]),
            helper.make_node("Identity", [f"{p}init_h"], [f"{p}init_c"]),
        ], [f"{p}encoded", f"{p}init_h", f"{p}init_c"]

    def _empty_step(self, p: str) -> tuple[list[onnx.NodeProto], list[str]]:
        """No tokens: no logits, and the state passes through."""
        batch = f"{p}batch"
        return [
            helper.make_node("Shape", ["tokens"], [batch], start=0, end=1),
            *_zeros(p, "logits", batch, [None, 0, self.vocab_size]),
            helper.make_node("Identity", ["past_h"], [f"{p}present_h"]),
            helper.make_node("Identity", ["past_c"], [f"{p}present_c"]),
        ], [f"{p}logits", f"{p}present_h", f"{p}present_c"]

    def export_proto(self) -> onnx.ModelProto:
        from antiphon.export.onnx_export import export_graph

        encoder, decoder = (export_graph(p, "") for p in self._parts())
        sig = self.signature()
        weights: dict[str, onnx.TensorProto] = {}
        for part in (encoder, decoder):
            for init in part.graph.initializer:
                weights.setdefault(init.name, init)  # shared weights (the embedding) once
        nodes = [
            *_gated("encoder", "context", encoder.graph, weights, self._empty_encoding),
            *_gated("decoder", "tokens", decoder.graph, weights, self._empty_step),
        ]
        graph = helper.make_graph(
            nodes,
            "antiphon_seq2seq",
            [_value_info(n, sig.inputs[n], n in ("context", "tokens")) for n in self.input_names],
            [_value_info(n, sig.outputs[n]) for n in self.output_names],
            list(weights.values()),
        )
        proto = helper.make_model(
            graph, opset_imports=list(encoder.opset_import), ir_version=encoder.ir_version
        )
        onnx.checker.check_model(proto)
        return proto


def _value_info(name: str, shape: list[Any], ints: bool = False) -> onnx.ValueInfoProto:
    dtype = TensorProto.INT64 if ints else TensorProto.FLOAT
    return helper.make_tensor_value_info(name, dtype, shape)


def _float(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def _gated(
    prefix: str,
    trigger: str,
    part: onnx.GraphProto,
    weights: dict[str, onnx.TensorProto],
    empty: Callable[[str], tuple[list[onnx.NodeProto], list[str]]],
) -> list[onnx.NodeProto]:
    """``part`` as the then-branch of an ``If`` on ``trigger`` being non-empty; ``empty``
    builds the else-branch. The part's own names get ``prefix/`` (names must be unique
    across nested graphs); its inputs and weights are read from the outer graph."""
    outer = {i.name for i in part.input} | set(weights) | {""}

    def rename(name: str) -> str:
        return name if name in outer else f"{prefix}/{name}"

    then_nodes = []
    for node in part.node:
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            raise ValueError(f"unexpected subgraph in the {prefix} graph ({node.op_type})")
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = f"{prefix}/{node.name}"
        new.input[:] = [rename(n) for n in node.input]
        new.output[:] = [rename(n) for n in node.output]
        then_nodes.append(new)
    then_outputs = [_float(rename(o.name)) for o in part.output]
    then_branch = helper.make_graph(then_nodes, f"{prefix}_run", [], then_outputs)
    else_nodes, else_names = empty(f"{prefix}_empty/")
    else_branch = helper.make_graph(
        else_nodes, f"{prefix}_skip", [], [_float(n) for n in else_names]
    )
    size, zero, cond = f"{prefix}_gate/size", f"{prefix}_gate/zero", f"{prefix}_gate/cond"
    return [
        helper.make_node("Size", [trigger], [size], name=size),
        _constant(zero, [], [0]),
        helper.make_node("Greater", [size, zero], [cond], name=cond),
        helper.make_node(
            "If", [cond], [o.name for o in part.output], name=f"{prefix}_gate/if",
            then_branch=then_branch, else_branch=else_branch,
        ),
    ]  # fmt: skip


def _constant(name: str, dims: list[int], values: list[int]) -> onnx.NodeProto:
    value = helper.make_tensor(name, TensorProto.INT64, dims, values)
    return helper.make_node("Constant", [], [name], name=name, value=value)


def _zeros(p: str, name: str, batch: str, dims: list[int | None]) -> list[onnx.NodeProto]:
    """Zeros of shape ``dims``, where None stands for the batch size (a 1-D tensor ``batch``)."""
    shape = f"{p}{name}_shape"
    parts = [batch if d is None else f"{p}{name}_dim{i}" for i, d in enumerate(dims)]
    nodes = [_constant(part, [1], [d]) for part, d in zip(parts, dims) if d is not None]
    nodes.append(helper.make_node("Concat", parts, [shape], axis=0))
    nodes.append(helper.make_node("ConstantOfShape", [shape], [f"{p}{name}"]))
    return nodes
