"""Graph clean-up after tracing: constant shapes for reshapes, then dead-node removal.

The TorchScript exporter builds every ``view``/``reshape`` target from ``Shape`` ->
``Gather`` -> ``Unsqueeze`` -> ``Concat`` chains at run time, even where the leading dims are
just carried through. onnxruntime pays a few microseconds per node, and at batch 1 a decode
step is mostly such overhead, so where shape inference proves it safe a reshape gets a
constant target that copies the leading dims (``0``) and spells out the trailing ones.
Verification then compares the result with torch like any export.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value or "?" for d in value.type.tensor_type.shape.dim]


def constant_reshapes(proto: onnx.ModelProto) -> int:
    """Give reshapes constant targets where it is provably equivalent; returns how many."""
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    known = {
        v.name: _dims(v)
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    changed = 0
    for node in proto.graph.node:
        if node.op_type != "Reshape" or node.input[0] not in known or node.output[0] not in known:
            continue
        src, dst = known[node.input[0]], known[node.output[0]]
        lead = next((i for i, d in enumerate(dst) if isinstance(d, int)), len(dst))
        src_tail, dst_tail = src[lead:], dst[lead:]
        if lead == 0 or len(src) < lead or not dst_tail:
            continue
        if not all(isinstance(d, int) for d in src_tail + dst_tail):
            continue
        if math.prod(src_tail) != math.prod(dst_tail):  # type: ignore[arg-type]
            continue
        # Reshape's 0 copies the input's dim at that index: the leading dims pass through,
        # the trailing ones regroup a known number of elements.
        target = numpy_helper.from_array(
            np.asarray([0] * lead + dst_tail, dtype=np.int64),
            name=f"{node.name or node.output[0]}_target",
        )
        proto.graph.initializer.append(target)
        node.input[1] = target.name
        changed += 1
    remove_dead_nodes(proto)
    return changed


def remove_dead_nodes(proto: onnx.ModelProto) -> None:
    needed = {o.name for o in proto.graph.output}
    keep = []
    for node in reversed(proto.graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(keep))
