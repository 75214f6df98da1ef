"""Export + verification on a tiny random-initialised model (no training needed)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from antiphon.contract import ModelInfo  # noqa: E402
from antiphon.errors import UserError  # noqa: E402
from antiphon.export.graphs import graph_for  # noqa: E402
from antiphon.export.verify import ATOL, CASES, ParityError, verify  # noqa: E402
from antiphon.live.session import ModelFile  # noqa: E402
from antiphon.models.midi.tokenizer import Tokenizer  # noqa: E402
from antiphon.models.train import load_checkpoint, model_from_checkpoint  # noqa: E402


def test_exported_file_describes_itself(tiny_onnx, tiny_checkpoint) -> None:
    mf = ModelFile.open(tiny_onnx)
    info = mf.info
    ckpt = load_checkpoint(tiny_checkpoint)
    assert info.family == "transformer" and info.representation == "tokens"
    assert info.max_context == 96
    assert Tokenizer.from_params(info.tokenizer) == Tokenizer.from_params(ckpt["tokenizer"])
    assert info.vocab == Tokenizer.from_params(info.tokenizer).vocab
    assert info.config == ckpt["model_config"]
    assert {p.input for p in info.signature.state} == {
        f"past_{kv}_{i}" for i in range(2) for kv in ("key", "value")
    }
    # dynamic axes are named in the graph itself, not only in the metadata
    graph_inputs = {i.name: i.shape for i in mf.session.get_inputs()}
    assert graph_inputs["tokens"] == ["batch", "seq"]
    assert graph_inputs["past_key_0"][2] == "capacity"  # a KV buffer written in place
    assert all(p.inplace and p.axis == 2 for p in info.signature.state)
    assert info.verification["greedy_identical"] is True
    assert info.verification["max_abs_diff"] <= ATOL


def test_parity_holds_at_lengths_other_than_the_dummy(tiny_onnx, tiny_checkpoint) -> None:
    graph = graph_for("transformer", model_from_checkpoint(load_checkpoint(tiny_checkpoint)))
    report = verify(graph, ModelFile.open(tiny_onnx))
    assert [(c["seq"], c["cache"]) for c in report.cases] == list(CASES)
    assert (3, 2) not in CASES  # the export dummy
    assert report.max_abs_diff < 1e-4
    assert report.greedy_identical and report.greedy_agreement == 1.0


def test_verification_catches_a_graph_that_disagrees(tiny_onnx, tiny_checkpoint) -> None:
    import torch

    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    with torch.no_grad():
        model.blocks[0].mlp[0].weight.mul_(1.5)  # torch side no longer matches the file
    with pytest.raises(ParityError, match="differ by"):
        verify(graph_for("transformer", model), ModelFile.open(tiny_onnx))


def test_reloading_the_torch_model_from_the_onnx_file(tiny_onnx, tiny_checkpoint) -> None:
    from antiphon.export.reload import torch_from_onnx

    a = model_from_checkpoint(load_checkpoint(tiny_checkpoint)).state_dict()
    b = torch_from_onnx(tiny_onnx).state_dict()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_int8_quantization_reports_agreement_and_nll(tiny_onnx, tmp_path) -> None:
    from antiphon.export.quantize import compare, quantize_file

    q = quantize_file(tiny_onnx, tmp_path / "q.onnx")
    report = compare(ModelFile.open(tiny_onnx), ModelFile.open(q), None, "")
    assert 0.0 <= report.greedy_agreement <= 1.0
    assert report.eval_tokens > 100 and report.eval_source == "fp32 greedy tokens"
    assert abs(report.nll_change) < 1.0  # a random tiny model barely moves


def test_quantizing_leaves_the_processs_logging_as_it_found_it(tiny_onnx, tmp_path) -> None:
    """The quantizer's advice is quieted for the call only: the root logger left at ERROR
    lost every later warning in the process (seen as a test suite's daemon logging
    nothing)."""
    import logging

    from antiphon.export.quantize import quantize_file

    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        quantize_file(tiny_onnx, tmp_path / "q.onnx")
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)


def test_foreign_and_garbage_onnx_files_are_rejected(tmp_path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(
        helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), foreign
    )
    with pytest.raises(UserError, match="without antiphon metadata"):
        ModelFile.open(foreign)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01not a protobuf at all" * 10)
    with pytest.raises(UserError, match="not a loadable ONNX model"):
        ModelFile.open(garbage)
    with pytest.raises(UserError, match="no such model file"):
        ModelFile.open(tmp_path / "missing.onnx")


def test_metadata_contract_round_trips_and_rejects_other_versions() -> None:
    from antiphon.contract import Signature, StatePair

    info = ModelInfo(
        family="transformer",
        representation="tokens",
        signature=Signature(
            {"tokens": ["batch", "seq"]},
            {"logits": ["batch", "seq", 5]},
            [StatePair("a", "b", 2, [1])],
        ),
        max_context=8,
        vocab=["A", "B"],
        grid={"tpq": 8, "pitch_lo": 21, "pitch_hi": 108, "velocities": [64]},
        tokenizer=None,
        config={"n_layer": 1},
        provenance={"steps": 3},
        verification={},
    )
    assert ModelInfo.from_props(info.to_props()) == info
    props = info.to_props() | {"antiphon.format": "99"}
    with pytest.raises(UserError, match="not supported"):
        ModelInfo.from_props(props)
    with pytest.raises(UserError, match="lacks"):
        ModelInfo.from_props({"antiphon.format": "1"})


def test_int8_weights_really_are_int8(tiny_onnx, tmp_path) -> None:
    from antiphon.export.quantize import quantize_file

    q = onnx.load(quantize_file(tiny_onnx, tmp_path / "q8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert any(i.data_type == onnx.TensorProto.INT8 for i in q.graph.initializer)


def test_an_int8_file_rebuilds_torch_with_its_dequantized_weights(tiny_onnx, tmp_path) -> None:
    """``antiphon bench`` compares an int8 file with torch running the very weights the
    file holds: each within half a quantization step of the fp32 original."""
    from antiphon.export.quantize import dequantized_weights, quantize_file
    from antiphon.export.reload import torch_from_onnx

    q = quantize_file(tiny_onnx, tmp_path / "q8.onnx")
    deq = dequantized_weights(onnx.load(str(q)))
    assert "model.blocks.0.mlp.0.weight" in deq  # found again by name, transposed back
    fp32 = torch_from_onnx(tiny_onnx).state_dict()
    int8 = torch_from_onnx(q).state_dict()
    assert fp32.keys() == int8.keys()
    w32, w8 = fp32["blocks.0.mlp.0.weight"].numpy(), int8["blocks.0.mlp.0.weight"].numpy()
    step = np.abs(w32).max() / 127
    assert w8.shape == w32.shape and 0 < np.abs(w8 - w32).max() <= step / 2 + 1e-7
    assert np.array_equal(int8["ln_f.weight"].numpy(), fp32["ln_f.weight"].numpy())


def test_bench_times_onnxruntime_against_torch_eager(tiny_onnx, tmp_path) -> None:
    from antiphon.export.bench import bench, format_table
    from antiphon.export.onnx_export import update_metadata
    from antiphon.export.quantize import quantize_file

    r = bench(tiny_onnx, context=40, steps=30, warmup=3)
    assert [row.engine for row in r.rows] == ["onnxruntime", "torch eager"]
    assert r.context == 40 and all(row.p50_ms > 0 for row in r.rows)
    assert r.speedup == r.rows[1].p50_ms / r.rows[0].p50_ms
    assert "faster than torch eager at p50" in format_table(r)
    # an int8 file adds torch's own int8 as a like-for-like row
    q = quantize_file(tiny_onnx, tmp_path / "q8.onnx")
    update_metadata(q, provenance={"quantization": {"int8_dynamic": {}}})
    r8 = bench(q, context=40, steps=30, warmup=3)
    assert [row.engine for row in r8.rows] == ["onnxruntime", "torch eager", "torch eager int8"]
    assert r8.speedup == min(r8.speedups.values())
    assert r8.int8 and not r.int8 and "int8 dynamic quantization" in format_table(r8)


def test_reshapes_get_constant_targets(tiny_onnx) -> None:
    """The export's clean-up leaves no run-time shape arithmetic in front of reshapes (and
    the verification above proves the graph still matches torch)."""
    proto = onnx.load(str(tiny_onnx))
    init = {i.name for i in proto.graph.initializer}
    reshapes = [n for n in proto.graph.node if n.op_type == "Reshape"]
    constant = [n for n in reshapes if n.input[1] in init]
    assert len(constant) >= 2 * 2  # two per layer of the tiny model
