"""Checkpoint -> ONNX file with the antiphon metadata (verification is ``export.verify``)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from antiphon.atomic import atomic_path
from antiphon.contract import ModelInfo
from antiphon.export.graphs import graph_for
from antiphon.export.simplify import constant_reshapes
from antiphon.models.midi.tokenizer import Tokenizer
from antiphon.models.registry import family
from antiphon.models.train import load_checkpoint, model_from_checkpoint


def provenance(ckpt: dict, checkpoint_path: str | Path) -> dict:
    metrics = ckpt.get("metrics", {})
    return {
        "checkpoint": str(checkpoint_path),
        "corpus": ckpt.get("data", {}),
        "steps": ckpt.get("step"),
        "valid_nll": metrics.get("valid_nll"),
        "bigram_valid_nll": metrics.get("bigram_valid_nll"),
        "train_config": ckpt.get("train_config", {}),
        "versions": ckpt.get("versions", {}),
        "quantization": None,
    }


def model_info(ckpt: dict, graph: Any, prov: dict, verification: dict | None = None) -> ModelInfo:
    # Token families carry their miditok tokenizer (vocabulary and grid come from it);
    # the others carry just the grid their notes or frames live on.
    tok = Tokenizer.from_params(ckpt["tokenizer"]) if ckpt.get("tokenizer") else None
    return ModelInfo(
        family=ckpt["family"],
        representation=family(ckpt["family"]).representation,
        signature=graph.signature(),
        max_context=graph.max_context,
        vocab=tok.vocab if tok else [],
        grid=tok.grid.to_dict() if tok else ckpt["grid"],
        tokenizer=ckpt.get("tokenizer"),
        config=ckpt["model_config"],
        provenance=prov,
        verification=verification or {},
    )


def export_graph(graph: Any, out: str | Path) -> onnx.ModelProto:
    """Trace the adapter's flat wrapper at a small dummy and write the graph (no metadata)."""
    if hasattr(graph, "export_proto"):
        return graph.export_proto()
    dummy = graph.feed(seq=getattr(graph, "dummy_seq", 3), past=2)  # single-step forms: 1
    args = tuple(torch.from_numpy(dummy[n]) for n in graph.input_names)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.wrapper(),
            args,
            buf,
            input_names=graph.input_names,
            output_names=graph.output_names,
            dynamic_axes=graph.dynamic_axes(),
            opset_version=graph.opset,
            # onnxruntime's fused kernels, where a model exports to them (models.transformer)
            custom_opsets=dict(getattr(graph, "custom_opsets", {})),
            dynamo=False,
            # Keep initializer names equal to the state_dict keys, so the torch model can be
            # rebuilt from the .onnx alone (`antiphon bench` compares against torch eager).
            do_constant_folding=False,
            # ... and keep them all: the exporter otherwise merges initializers with equal
            # values (two LayerNorms still at their init), losing names. They are listed as
            # graph inputs this way, which we undo below so onnxruntime treats them as constants.
            keep_initializers_as_inputs=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    weights = {init.name for init in proto.graph.initializer}
    kept = [i for i in proto.graph.input if i.name not in weights]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    constant_reshapes(proto)
    onnx.checker.check_model(proto)
    return proto


def write_with_metadata(proto: onnx.ModelProto, info: ModelInfo, out: str | Path) -> Path:
    del proto.metadata_props[:]
    for k, v in info.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "antiphon"
    out = Path(out)
    with atomic_path(out, what="ONNX model") as tmp:
        onnx.save(proto, str(tmp))
    return out


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> tuple[Path, dict, Any]:
    """Export a checkpoint; returns the path, the loaded checkpoint and the graph adapter."""
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    graph = graph_for(ckpt["family"], model)
    proto = export_graph(graph, out)
    info = model_info(ckpt, graph, provenance(ckpt, checkpoint))
    return write_with_metadata(proto, info, out), ckpt, graph


def update_metadata(path: str | Path, **fields: Any) -> None:
    """Rewrite some metadata fields of an exported file in place (verification, provenance)."""
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    info = ModelInfo.from_props(props, str(path))
    info = ModelInfo(**{**vars(info), **fields})
    write_with_metadata(proto, info, path)
