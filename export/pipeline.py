"""What ``antiphon export`` does: checkpoint -> ONNX, parity verified and recorded in the file,
and optionally the int8 copy.

Each stage reports one line to ``log`` as it finishes (the CLI passes ``print``), so a long
int8 comparison is not silent and a failing stage leaves the lines of the stages before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from antiphon.atomic import atomic_path
from antiphon.export.half import fp16_copy
from antiphon.export.onnx_export import export_checkpoint, update_metadata
from antiphon.export.quantize import QuantReport, int8_copy
from antiphon.export.verify import Report, verify
from antiphon.live.session import ModelFile


@dataclass(frozen=True)
class Exported:
    path: Path
    graph: Any  # the family's graph adapter (export.graphs), around the checkpoint's model
    verification: Report
    int8_path: Path | None = None
    int8: QuantReport | None = None
    fp16_path: Path | None = None
    fp16: Report | None = None


def export_model(
    checkpoint: str | Path,
    output: str | Path,
    *,
    int8: bool = False,
    fp16: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> Exported:
    """Export ``checkpoint`` to ``output``, verify it against torch and record the report in
    its metadata; with ``int8`` also write ``OUT.int8.onnx`` beside it, with ``fp16``
    ``OUT.fp16.onnx`` (``export.half``).

    The file is exported and verified beside ``output`` and replaces it only then: a failed
    export or verification leaves an earlier file there as it was."""
    path = out = Path(output)
    with atomic_path(out, what="ONNX model") as staged:
        _, ckpt, graph = export_checkpoint(checkpoint, staged)
        log(f"exported {checkpoint} -> {out} ({staged.stat().st_size / 1e6:.1f} MB)")
        mf = ModelFile.open(staged)
        report = verify(graph, mf)
        for case in report.cases:
            seq, cache, diff = case["seq"], case["cache"], case["max_abs_diff"]
            log(f"  parity seq={seq:>3} cache={cache:>3}: max |diff| {diff:.2e}")
        log(
            f"verified: max abs diff {report.max_abs_diff:.2e} (tolerance {report.tolerance:g}); "
            f"{report.greedy_tokens} greedy steps ({mf.info.representation}) identical in torch "
            "and onnxruntime"
        )
        update_metadata(staged, verification=report.to_dict())
    done = Exported(path, graph, report)
    if fp16:
        half, h = fp16_copy(path, graph, out.with_name(out.stem + ".fp16" + out.suffix))
        log(
            f"fp16 -> {half} ({half.stat().st_size / 1e6:.1f} MB): max abs diff from torch "
            f"{h.max_abs_diff:.2e} (tolerance {h.tolerance:g}), greedy agreement "
            f"{h.greedy_agreement:.0%}; for onnxruntime's CUDA provider (on the CPU fp32 is faster)"
        )
        done = replace(done, fp16_path=half, fp16=h)
    if not int8:
        return done
    int8_path, r = int8_copy(path, graph, ckpt, out.with_name(out.stem + ".int8" + out.suffix))
    log(_int8_line(int8_path, r))
    return replace(done, int8_path=int8_path, int8=r)


def _int8_line(path: Path, r: QuantReport) -> str:
    free = "greedy agreement" if r.unit == "token" else "greedy frames identical"
    forced = "top-1" if r.unit == "token" else "per-key"
    return (
        f"int8 -> {path} ({r.int8_bytes / 1e6:.1f} MB, fp32 {r.fp32_bytes / 1e6:.1f} MB): "
        f"{free} {r.greedy_agreement:.0%}, teacher-forced {forced} agreement "
        f"{r.teacher_forced_agreement:.1%}, NLL/{r.unit} {r.nll_fp32:.4f} -> "
        f"{r.nll_int8:.4f} ({r.nll_change:+.4f}) on {r.eval_tokens} {r.eval_source}"
    )
