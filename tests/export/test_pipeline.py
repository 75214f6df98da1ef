"""``antiphon export`` as a library call: the stages' lines, the file, the recorded report."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from antiphon.export.pipeline import export_model
from antiphon.live.session import ModelFile


def test_export_model_reports_each_stage_and_records_the_verification(
    tiny_checkpoint, tmp_path
) -> None:
    lines: list[str] = []
    done = export_model(tiny_checkpoint, tmp_path / "m.onnx", log=lines.append)
    assert done.path == tmp_path / "m.onnx" and done.int8_path is None and done.int8 is None
    assert lines[0].startswith(f"exported {tiny_checkpoint} -> {done.path} (")
    parity = [line for line in lines if line.startswith("  parity seq=")]
    assert len(parity) == len(done.verification.cases) > 1
    assert lines[-1].startswith("verified: max abs diff") and "(tokens)" in lines[-1]
    recorded = ModelFile.open(done.path).info.verification
    assert recorded == done.verification.to_dict()


def test_a_failed_verification_leaves_the_earlier_export(
    tiny_checkpoint, tmp_path, monkeypatch
) -> None:
    import antiphon.export.pipeline as pipeline
    from antiphon.atomic import TEMP_TAG

    out = tmp_path / "m.onnx"
    out.write_bytes(b"an earlier, verified export")

    def mismatch(graph, mf):
        raise AssertionError("max abs diff 3.1e-02 over tolerance 1e-03")

    monkeypatch.setattr(pipeline, "verify", mismatch)
    with pytest.raises(AssertionError, match="over tolerance"):
        export_model(tiny_checkpoint, out)
    assert out.read_bytes() == b"an earlier, verified export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert not [p for p in tmp_path.iterdir() if TEMP_TAG in p.name]
