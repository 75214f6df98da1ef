"""``antiphon export --fp16``: a half-precision transformer, verified against torch on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from antiphon.export.half import FP16_ATOL  # noqa: E402
from antiphon.live.session import ModelFile  # noqa: E402
from tests.test_cli import antiphon, assert_one_line_error  # noqa: E402


def test_the_fp16_copy_holds_half_weights_keeps_fp32_io_and_is_verified(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from antiphon.export.pipeline import export_model

    done = export_model(tiny_checkpoint, tmp_path / "m.onnx", fp16=True)
    assert done.fp16_path == tmp_path / "m.fp16.onnx"
    assert done.fp16.max_abs_diff <= FP16_ATOL and done.fp16.tolerance == FP16_ATOL
    proto = onnx.load(str(done.fp16_path))
    kinds = {i.data_type for i in proto.graph.initializer if len(i.dims) >= 2}
    assert kinds == {onnx.TensorProto.FLOAT16}  # every matrix is half
    io = [*proto.graph.input, *proto.graph.output]
    floats = {v.type.tensor_type.elem_type for v in io} - {
        onnx.TensorProto.INT64,
        onnx.TensorProto.INT32,
    }
    assert floats == {onnx.TensorProto.FLOAT}  # the contract's fp32 states and logits
    assert done.fp16_path.stat().st_size < 0.7 * done.path.stat().st_size
    mf = ModelFile.open(done.fp16_path)
    assert mf.info.provenance["precision"] == "fp16"
    assert mf.info.provenance["fp16_verification"]["max_abs_diff"] == done.fp16.max_abs_diff
    assert done.fp16.greedy_agreement >= 0.9


def test_fp16_of_a_family_where_it_does_not_pay_is_one_line(tmp_path: Path) -> None:
    from antiphon.models.midi.tokenizer import Tokenizer
    from antiphon.models.registry import family
    from tests.checkpoints import save_checkpoint

    tok = Tokenizer.create()
    model = family("token-gru").build({"vocab_size": len(tok), "n_embd": 16, "n_hidden": 16})
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", "token-gru", model, tokenizer=tok.to_params())
    out = tmp_path / "gru.onnx"
    proc = antiphon("export", str(ckpt), "-o", str(out), "--fp16")
    assert_one_line_error(proc, "no fp16 copy of a token-gru model")
    assert out.is_file() and not (tmp_path / "gru.fp16.onnx").exists()
