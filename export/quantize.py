"""int8 dynamic quantization of an exported model, with what it costs in agreement and NLL.

Dynamic quantization stores MatMul weights as int8 and quantizes activations on the fly; it
does not promise identical outputs, so instead of parity we report how often the int8 model
picks the same greedy token as fp32 (free-running and teacher-forced) and how much NLL/token
moves on the validation split (or, without the corpus at hand, on fp32-generated tokens).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from antiphon.atomic import atomic_path
from antiphon.errors import UserError
from antiphon.live.session import ModelFile
from antiphon.live.stepper import greedy
from antiphon.models.dataset import TokenSplit
from antiphon.models.nll import model_nll


@dataclass
class QuantReport:
    fp32_bytes: int
    int8_bytes: int
    greedy_agreement: float  # fraction of 64 free-running greedy tokens identical
    teacher_forced_agreement: float  # top-1 agreement on the evaluation tokens
    nll_fp32: float
    nll_int8: float
    eval_tokens: int  # steps scored: tokens, or frames for a piano-roll model
    eval_source: str
    unit: str = "token"

    @property
    def nll_change(self) -> float:
        return self.nll_int8 - self.nll_fp32

    def to_dict(self) -> dict:
        return {**asdict(self), "nll_change": self.nll_change}


def int8_unsupported(graph: Any, representation: str) -> str | None:
    """Why ``--int8`` cannot serve this model (None: it can)."""
    if hasattr(graph, "export_proto"):
        return (
            "its encoder and decoder-step graphs are merged into one file the quantizer cannot take"
        )
    if representation not in ("tokens", "frames"):
        return f"int8 agreement is measured on tokens or frames, not {representation}"
    return None


def int8_copy(
    fp32: str | Path, graph: Any, ckpt: dict, out: str | Path
) -> tuple[Path, QuantReport]:
    """``antiphon export --int8``: the int8 copy of an exported, verified file, compared with
    it on the checkpoint's valid pieces where they are at hand; the comparison is recorded
    in the copy's provenance."""
    from antiphon.export.onnx_export import update_metadata

    a = ModelFile.open(fp32)
    why = int8_unsupported(graph, a.info.representation)
    if why:
        raise UserError(f"{fp32} is written; no int8 copy of a {a.info.family} model: {why}")
    # Compared and annotated beside ``out``, then renamed: a failure leaves an earlier copy.
    with atomic_path(out, what="int8 ONNX model") as staged:
        b = ModelFile.open(quantize_export(fp32, graph, staged))
        if a.info.representation == "frames":
            from antiphon.models.frames_train import valid_rolls_of

            report = compare_frames(a, b, graph, *valid_rolls_of(ckpt))
        else:
            from antiphon.models.train import valid_split_of

            report = compare(a, b, *valid_split_of(ckpt))
        quantization = {"int8_dynamic": report.to_dict()}
        update_metadata(staged, provenance={**b.info.provenance, "quantization": quantization})
    return Path(out), report


def quantize_export(fp32: str | Path, graph: Any, int8: str | Path) -> Path:
    """The int8 copy of an exported, verified file. An adapter with a single-step form
    (``step_graph()``: the GRUs, ``export.cells``) is quantized from that form instead —
    onnxruntime's quantizer does not reach inside the GRU operator — after the form has been
    exported with the file's metadata and verified against torch like any export."""
    step = getattr(graph, "step_graph", lambda: None)()
    if step is None:
        return quantize_file(fp32, int8)
    from antiphon.export.onnx_export import export_graph, update_metadata, write_with_metadata
    from antiphon.export.verify import verify

    info = replace(ModelFile.open(fp32).info, signature=step.signature())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "step.onnx"
        write_with_metadata(export_graph(step, path), info, path)
        update_metadata(path, verification=verify(step, ModelFile.open(path)).to_dict())
        return quantize_file(path, int8)


def quantize_file(fp32: str | Path, int8: str | Path) -> Path:
    import logging

    int8 = Path(int8)
    root = logging.getLogger()
    level = root.level
    # The quantizer's advice goes to the root logger: quiet for the call only. Left at
    # ERROR, every warning after it in the process was lost (a test suite's daemon's too).
    root.setLevel(logging.ERROR)
    try:
        return _quantize(fp32, int8)
    finally:
        root.setLevel(level)


def _quantize(fp32: str | Path, int8: Path) -> Path:
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        # Export keeps weights behind Transpose nodes (their names must survive for
        # export.reload); folding them first is what lets MatMul weights become int8, and
        # folding them here under a known name (``W.T``) is what lets reload find them again.
        transposed = Path(tmp) / "transposed.onnx"
        proto = onnx.load(str(fp32))
        fold_weight_transposes(proto)
        onnx.save(proto, transposed)
        folded = Path(tmp) / "folded.onnx"
        quant_pre_process(str(transposed), str(folded), skip_symbolic_shape=True)
        with atomic_path(int8, what="int8 ONNX model") as part:
            quantize_dynamic(
                str(folded), str(part), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
            )
    return int8


TRANSPOSED = ".T"  # suffix of a weight stored transposed for MatMul
QUANTIZED = "_quantized"  # onnxruntime's suffixes for a dynamically quantized weight
SCALE, ZERO_POINT = "_scale", "_zero_point"


def fold_weight_transposes(proto: onnx.ModelProto) -> int:
    """Replace ``Transpose(W)`` of a 2-D initializer by an initializer ``W.T``."""
    weights = {init.name: init for init in proto.graph.initializer}
    keep, folded = [], 0
    for node in proto.graph.node:
        w = weights.get(node.input[0]) if node.op_type == "Transpose" and node.input else None
        perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
        if w is None or len(w.dims) != 2 or perm not in ([], [[1, 0]]):
            keep.append(node)
            continue
        t = numpy_helper.from_array(numpy_helper.to_array(w).T.copy(), w.name + TRANSPOSED)
        proto.graph.initializer.append(t)
        for other in proto.graph.node:
            for j, i in enumerate(other.input):
                if i == node.output[0]:
                    other.input[j] = t.name
        for out in proto.graph.output:
            if out.name == node.output[0]:
                raise ValueError("a graph output is a weight transpose")
        folded += 1
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    used = {i for node in keep for i in node.input}
    unused = [init for init in proto.graph.initializer if init.name not in used]
    for init in unused:
        proto.graph.initializer.remove(init)
    return folded


def dequantized_weights(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The fp32 weights of an int8 file by their original names (``W.T`` transposed back):
    what torch eager runs when it is compared with onnxruntime on a quantized model."""
    inits = {i.name: i for i in proto.graph.initializer}
    out = {}
    for name, init in inits.items():
        if not name.endswith(QUANTIZED):
            continue
        base = name[: -len(QUANTIZED)]
        q = numpy_helper.to_array(init).astype(np.float32)
        scale = numpy_helper.to_array(inits[base + SCALE]).astype(np.float32)
        zero = numpy_helper.to_array(inits[base + ZERO_POINT]).astype(np.float32)
        w = (q - zero) * scale
        if base.endswith(TRANSPOSED):
            base, w = base[: -len(TRANSPOSED)], w.T
        out[base] = np.ascontiguousarray(w)
    return out


def _scorer(mf: ModelFile):  # type: ignore[no-untyped-def]
    return mf.stepper().log_probs  # takes any sequence of token ids


def compare(fp32: ModelFile, int8: ModelFile, split: TokenSplit | None, source: str) -> QuantReport:
    ctx = fp32.info.max_context
    prompt = [1, *range(4, 20)]
    a = greedy(fp32.stepper(), prompt, 64)
    b = greedy(int8.stepper(), prompt, 64)
    if split is None:
        # No corpus at hand: score fp32's own greedy continuation of a longer run.
        toks = np.asarray([*prompt, *greedy(fp32.stepper(), prompt, 256)])
        split = TokenSplit(toks.astype(np.int32), np.asarray([0, len(toks)]))
        source = "fp32 greedy tokens"
    block = min(ctx, 256)
    nll_a, n = model_nll(_scorer(fp32), split, block, max_pieces=8)
    nll_b, _ = model_nll(_scorer(int8), split, block, max_pieces=8)
    agree = _teacher_forced_agreement(fp32, int8, split, block)
    return QuantReport(
        os.path.getsize(fp32.path),
        os.path.getsize(int8.path),
        sum(x == y for x, y in zip(a, b)) / 64,
        agree,
        nll_a,
        nll_b,
        n,
        source,
    )


def _teacher_forced_agreement(
    fp32: ModelFile, int8: ModelFile, split: TokenSplit, block: int
) -> float:
    sa, sb = _scorer(fp32), _scorer(int8)
    same = total = 0
    for i, piece in enumerate(split):
        if i >= 8:
            break
        w = piece[:block]
        pa, pb = sa(w).argmax(-1), sb(w).argmax(-1)
        same += int((pa == pb).sum())
        total += len(pa)
    return same / max(total, 1)


FRAMES_SCORED = 8  # valid pieces a frame model's int8 copy is scored on


def compare_frames(
    fp32: ModelFile, int8: ModelFile, graph: Any, pieces: list[np.ndarray] | None, source: str
) -> QuantReport:
    """``compare`` for a piano-roll model: 64 greedy frames after the adapter's prompt,
    per-key agreement of the teacher-forced decisions (a key down when its logit > 0), and
    frame NLL, on valid pieces (without them: on fp32's own greedy frames)."""
    from antiphon.export.polyeval import bernoulli_nll, frame_logits

    a, b = graph.rollout(fp32.run, 64), graph.rollout(int8.run, 64)
    if not pieces:
        roll = np.zeros((len(a), graph.n_keys), dtype=np.float32)
        for t, keys in enumerate(a):
            roll[t, list(keys)] = 1.0
        pieces, source = [roll], "fp32 greedy frames"
    pieces = pieces[:FRAMES_SCORED]
    same = keys = frames = 0
    nll_a = nll_b = 0.0
    for roll in pieces:
        la, lb = frame_logits(fp32, roll), frame_logits(int8, roll)
        nll_a += float(bernoulli_nll(la, roll).sum())
        nll_b += float(bernoulli_nll(lb, roll).sum())
        same += int(((la > 0) == (lb > 0)).sum())
        keys += la.size
        frames += len(roll)
    return QuantReport(
        os.path.getsize(fp32.path),
        os.path.getsize(int8.path),
        sum(x == y for x, y in zip(a, b)) / 64,
        same / max(keys, 1),
        nll_a / max(frames, 1),
        nll_b / max(frames, 1),
        frames,
        source,
        unit="frame",
    )
