"""Parity of an exported graph with torch, at shapes other than the export dummy.

The export traced seq=3 with a cache of 2; verification runs other sequence and cache
lengths (a dynamic axis that was accidentally frozen shows up here), compares every output
within ``ATOL``, and checks that 64 greedy-decoded tokens are identical. fp32 kernels differ
between torch and onnxruntime only by summation order, ~1e-6 on logits of this size; 1e-3
leaves room for long sequences while a real mismatch (a wrong mask, a lost position) is
orders of magnitude larger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from antiphon.errors import UserError
from antiphon.live.session import ModelFile
from antiphon.live.stepper import TokenStepper, greedy

ATOL = 1e-3
CASES = ((1, 0), (7, 0), (1, 13), (5, 29), (16, 61))  # (sequence length, cache length)
GREEDY_TOKENS = 64


class ParityError(UserError):
    """The exported graph disagrees with torch."""


@dataclass
class Report:
    cases: list[dict] = field(default_factory=list)
    max_abs_diff: float = 0.0
    tolerance: float = ATOL
    greedy_tokens: int = GREEDY_TOKENS
    greedy_identical: bool = False
    greedy_agreement: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def compare_outputs(graph: Any, model_file: ModelFile, cases=CASES) -> Report:  # type: ignore[no-untyped-def]
    report = Report()
    buffers = {p.output: p.axis for p in model_file.info.signature.state if p.inplace}
    for seq, past in cases:
        feed = graph.feed(seq=seq, past=past, seed=seq * 1000 + past)
        ref = graph.run(feed)
        got = model_file.run(feed)
        diffs = {}
        for name, r in ref.items():
            if got[name].shape != r.shape:
                raise ParityError(
                    f"output {name} has shape {got[name].shape} in onnxruntime, {r.shape} in "
                    f"torch (seq={seq}, cache={past}): a dynamic axis was frozen at export"
                )
            g, r = _held(got[name], name, feed, buffers), _held(r, name, feed, buffers)
            diffs[name] = float(np.max(np.abs(g - r))) if r.size else 0.0
        worst = max(diffs.values())
        report.cases.append({"seq": seq, "cache": past, "max_abs_diff": worst})
        report.max_abs_diff = max(report.max_abs_diff, worst)
    return report


def _held(value: np.ndarray, name: str, feed: dict, buffers: dict[str, int]) -> np.ndarray:
    """The rows of a KV buffer that hold tokens (beyond them the buffer is unspecified)."""
    if name not in buffers:
        return value
    index = [slice(None)] * value.ndim
    index[buffers[name]] = slice(0, int(feed["total_sequence_length"]))
    return value[tuple(index)]


def verify(graph: Any, model_file: ModelFile, prompt: list[int] | None = None) -> Report:
    """Raise ``ParityError`` above tolerance or on any greedy mismatch; return the report."""
    report = compare_outputs(graph, model_file)
    if report.max_abs_diff > ATOL:
        raise ParityError(
            f"onnxruntime and torch differ by {report.max_abs_diff:.3g} > {ATOL:g} "
            f"(cases: {report.cases})"
        )
    if hasattr(graph, "rollout"):  # families that are not plain token models decode their way
        ours, theirs = (
            graph.rollout(model_file.run, GREEDY_TOKENS),
            graph.rollout(graph.run, GREEDY_TOKENS),
        )
    else:
        sig, ctx = model_file.info.signature, model_file.info.max_context
        prompt = prompt if prompt is not None else [1, *range(4, 20)]
        ours = greedy(model_file.stepper(), prompt, GREEDY_TOKENS)
        theirs = greedy(TokenStepper(graph.run, sig, ctx), prompt, GREEDY_TOKENS)
    same = sum(a == b for a, b in zip(ours, theirs))
    report.greedy_agreement = same / GREEDY_TOKENS
    report.greedy_identical = ours == theirs
    if not report.greedy_identical:
        first = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
        raise ParityError(
            f"greedy decoding diverges at token {first} of {GREEDY_TOKENS} "
            f"(onnxruntime {ours[first]}, torch {theirs[first]})"
        )
    return report
