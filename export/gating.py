"""Several traced parts in one ONNX graph, each run only when its input is non-empty.

onnxruntime requires every input and runs every node whatever outputs are asked for, so a
file holding an encoder, a conductor and a decoder step puts each part in an ``If`` on
``Size(trigger) > 0``: a call feeds empty tensors to the parts it does not use, and those
cost nothing. Each branch is a graph traced by ``export.onnx_export.export_graph`` (so the
initializer names stay the state_dict keys and ``export.reload`` still rebuilds the torch
model); its weights move to the top level, shared between branches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper
from torch import nn


class Part:
    """One part, shaped like a graph adapter so ``export_graph`` traces it unchanged."""

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
        return {n: a for n, a in self._axes.items() if n in self.input_names + self.output_names}

    def wrapper(self) -> nn.Module:
        return self._module

    def feed(self, seq: int, past: int) -> dict[str, np.ndarray]:
        return self._dummy()


def _branch(prefix: str, part: onnx.GraphProto, outer: set[str]) -> onnx.GraphProto:
    """``part`` as a subgraph reading the outer graph's inputs and weights; its own names
    get ``prefix/`` (names must be unique across nested graphs)."""

    def rename(name: str) -> str:
        return name if name in outer else f"{prefix}/{name}"

    nodes = []
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
        nodes.append(new)
    outputs = [helper.make_tensor_value_info(rename(o.name), o.type.tensor_type.elem_type, None)
               for o in part.output]  # fmt: skip
    return helper.make_graph(nodes, prefix.replace("/", "_"), [], outputs)


def gated(
    prefix: str,
    trigger: str,
    then: onnx.GraphProto,
    otherwise: onnx.GraphProto,
    weights: dict[str, onnx.TensorProto],
) -> list[onnx.NodeProto]:
    """Nodes computing ``then``'s outputs when ``trigger`` holds anything, else
    ``otherwise``'s (same outputs, in the same order). Both parts' weights are added to
    ``weights`` (one copy of a weight both use)."""
    names = [o.name for o in then.output]
    if [o.name for o in otherwise.output] != names:
        raise ValueError(f"{prefix}: both branches must give {names}")
    for part in (then, otherwise):
        for init in part.initializer:
            weights.setdefault(init.name, init)
    outer = {i.name for i in then.input} | {i.name for i in otherwise.input} | set(weights) | {""}
    size, zero, cond = f"{prefix}_gate/size", f"{prefix}_gate/zero", f"{prefix}_gate/cond"
    return [
        helper.make_node("Size", [trigger], [size], name=size),
        helper.make_node(
            "Constant", [], [zero], name=zero,
            value=helper.make_tensor(zero, TensorProto.INT64, [], [0]),
        ),
        helper.make_node("Greater", [size, zero], [cond], name=cond),
        helper.make_node(
            "If", [cond], names, name=f"{prefix}_gate/if",
            then_branch=_branch(f"{prefix}", then, outer),
            else_branch=_branch(f"{prefix}_empty", otherwise, outer),
        ),
    ]  # fmt: skip
