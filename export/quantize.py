"""int8 dynamic quantization of an exported model, with what it costs in agreement and NLL.

Dynamic quantization stores MatMul weights as int8 and quantizes activations on the fly; it
does not promise identical outputs, so instead of parity we report how often the int8 model
picks the same greedy token as fp32 (free-running and teacher-forced) and how much NLL/token
moves on the validation split (or, without the corpus at hand, on fp32-generated tokens).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from antiphon.live.session import ModelFile
from antiphon.live.stepper import TokenStepper, greedy
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
    eval_tokens: int
    eval_source: str

    @property
    def nll_change(self) -> float:
        return self.nll_int8 - self.nll_fp32

    def to_dict(self) -> dict:
        return {**asdict(self), "nll_change": self.nll_change}


def quantize_file(fp32: str | Path, int8: str | Path) -> Path:
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    int8 = Path(int8)
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice goes to the root logger
    with tempfile.TemporaryDirectory() as tmp:
        # Export keeps weights behind Transpose nodes (their names must survive for
        # export.reload); folding them first is what lets MatMul weights become int8.
        folded = Path(tmp) / "folded.onnx"
        quant_pre_process(str(fp32), str(folded), skip_symbolic_shape=True)
        quantize_dynamic(
            str(folded), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
        )
    return int8


def _scorer(mf: ModelFile):  # type: ignore[no-untyped-def]
    stepper = TokenStepper(mf.run, mf.info.signature, mf.info.max_context)

    def score(window: np.ndarray) -> np.ndarray:
        feed = dict(stepper.empty().arrays)
        feed["tokens"] = np.asarray(window, dtype=np.int64)[None]
        if stepper.uses_positions:
            feed["positions"] = np.arange(len(window), dtype=np.int64)[None]
        logits = mf.run(feed)["logits"][0].astype(np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    return score


def compare(fp32: ModelFile, int8: ModelFile, split: TokenSplit | None, source: str) -> QuantReport:
    sig, ctx = fp32.info.signature, fp32.info.max_context
    prompt = [1, *range(4, 20)]
    a = greedy(TokenStepper(fp32.run, sig, ctx), prompt, 64)
    b = greedy(TokenStepper(int8.run, sig, ctx), prompt, 64)
    if split is None:
        # No corpus at hand: score fp32's own greedy continuation of a longer run.
        toks = np.asarray([*prompt, *greedy(TokenStepper(fp32.run, sig, ctx), prompt, 256)])
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
