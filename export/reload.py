"""Rebuild the torch model from an exported ``.onnx`` (config from metadata, weights from
initializers), so a shipped model can be benchmarked against torch eager without its
checkpoint. Export keeps initializer names equal to the state_dict keys for this; an int8 file
gives its weights dequantized (``export.quantize`` names them so they can be found)."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

from antiphon.contract import ModelInfo
from antiphon.errors import UserError
from antiphon.export.quantize import dequantized_weights
from antiphon.models.registry import family

WRAPPER_PREFIX = "model."


def torch_from_onnx(path: str | Path) -> torch.nn.Module:
    proto = onnx.load(str(path))
    info = ModelInfo.from_props({p.key: p.value for p in proto.metadata_props}, str(path))
    model = family(info.family).build(info.config)
    arrays = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for name, w in dequantized_weights(proto).items():  # an int8 file's quantized weights
        arrays.setdefault(name, w)  # (a tied weight the file also keeps in fp32 stays fp32)
    weights = {
        name.removeprefix(WRAPPER_PREFIX): torch.from_numpy(a.copy()) for name, a in arrays.items()
    }
    expected = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in expected and v.shape == expected[k].shape}
    model.load_state_dict(usable, strict=False)
    # Tied parameters appear once among the initializers; everything else must be there.
    tied = {
        k
        for k, v in expected.items()
        for k2, v2 in expected.items()
        if k != k2 and v.data_ptr() == v2.data_ptr()
    }
    # A BatchNorm's step counter only sets its momentum in training: no graph holds it.
    counters = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = set(expected) - set(usable) - tied - counters
    if missing:
        raise UserError(
            f"{path}: cannot rebuild the torch model; weights missing from the graph: "
            f"{', '.join(sorted(missing)[:4])}"
        )
    return model.eval()
