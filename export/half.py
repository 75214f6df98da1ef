"""``antiphon export --fp16``: a half-precision copy of an exported, verified file, for GPUs.

Where it pays: the transformer. onnxruntime's CUDA kernel of the fused attention
(``GroupQueryAttention``) runs in fp16 only, and a batch-1 decode step mostly reads
weights, which fp16 halves. The recurrent and convolutional families step through small
matrix products where a GPU is idle either way, so they get no copy (one line says so).

The weights and every operator inside become fp16 (``onnxruntime.transformers.float16``,
shipped with onnxruntime); the graph's inputs and outputs stay fp32 (``keep_io_types``), so
the contract, the steppers and the daemon's KV buffers are those of the fp32 file. The copy
is verified against torch on the cases of ``export.verify``, within ``FP16_ATOL``, and its
greedy agreement with torch is recorded (not required identical: rounding a logit to fp16
can turn a near tie).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from antiphon.atomic import atomic_path
from antiphon.errors import UserError
from antiphon.export.verify import GREEDY_TOKENS, ParityError, Report, compare_outputs
from antiphon.live.session import ModelFile
from antiphon.live.stepper import TokenStepper, greedy

# fp16 keeps 11 significant bits (relative error 4.9e-4 a rounding); logits of a few units
# through a few layers of rounded products differ from fp32 by ~1e-3..1e-2 (measured: at
# most 5.3e-3 on the tiny test transformer); a wrong graph is off by whole units.
FP16_ATOL = 5e-2
FP16_FAMILIES = ("transformer",)


def fp16_unsupported(family: str) -> str | None:
    if family in FP16_FAMILIES:
        return None
    return (
        "its steps are small matrix products and recurrent or convolutional ops, where a GPU "
        "gains nothing from fp16 (only the transformer's fused attention wants it)"
    )


def fp16_copy(fp32: str | Path, graph: Any, out: str | Path) -> tuple[Path, Report]:
    """Write the fp16 copy of ``fp32`` to ``out`` once it is verified against ``graph``."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from antiphon.export.onnx_export import update_metadata, write_with_metadata

    src = ModelFile.open(fp32, provider="cpu")
    why = fp16_unsupported(src.info.family)
    if why:
        raise UserError(f"{fp32} is written; no fp16 copy of a {src.info.family} model: {why}")
    half = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    provenance = {**src.info.provenance, "precision": "fp16"}
    with atomic_path(out, what="fp16 ONNX model") as staged:
        write_with_metadata(half, replace(src.info, provenance=provenance), staged)
        report = verify_fp16(graph, ModelFile.open(staged, provider="cpu"))
        update_metadata(staged, provenance={**provenance, "fp16_verification": report.to_dict()})
    return Path(out), report


def verify_fp16(graph: Any, mf: ModelFile) -> Report:
    report = compare_outputs(graph, mf)
    report.tolerance = FP16_ATOL
    if report.max_abs_diff > FP16_ATOL:
        raise ParityError(
            f"the fp16 copy and torch differ by {report.max_abs_diff:.3g} > {FP16_ATOL:g} "
            f"(cases: {report.cases})"
        )
    sig, ctx = mf.info.signature, mf.info.max_context
    prompt = [1, *range(4, 20)]
    ours = greedy(mf.stepper(), prompt, GREEDY_TOKENS)
    theirs = greedy(TokenStepper(graph.run, sig, ctx), prompt, GREEDY_TOKENS)
    report.greedy_agreement = sum(a == b for a, b in zip(ours, theirs)) / GREEDY_TOKENS
    report.greedy_identical = ours == theirs
    return report
