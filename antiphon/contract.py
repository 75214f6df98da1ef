"""The ONNX contract: what an antiphon ``.onnx`` file says about itself.

One file is a complete model. Its ``metadata_props`` (string -> string; JSON where
structured) carry everything the daemon and ``antiphon continue`` need:

==========================  ================================================================
key                         value
==========================  ================================================================
antiphon.format             contract version ("1")
antiphon.family             model family name (``models.registry``)
antiphon.representation     "tokens" (miditok ids)
antiphon.signature          JSON: inputs/outputs with named dynamic axes, and the state pairs
                            (past input -> present output, the axis that holds the context,
                            whether it is a buffer written in place)
antiphon.max_context        longest context the model was trained on (tokens)
antiphon.tokenizer          miditok's full tokenizer parameters (JSON, ``to_dict``)
antiphon.vocab              token strings in id order (JSON list)
antiphon.grid               ticks per quarter, pitch range, velocity bins (JSON)
antiphon.config             the family's model config (JSON)
antiphon.provenance         corpus, steps, validation NLL, versions, quantization (JSON)
antiphon.verification       parity report of the export (JSON)
==========================  ================================================================

This module is plain Python so the daemon can read the contract without onnx or torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from antiphon.errors import UserError

FORMAT = "1"
PREFIX = "antiphon."
REQUIRED = ("format", "family", "representation", "signature", "max_context", "vocab", "grid")
JSON_KEYS = ("signature", "tokenizer", "vocab", "grid", "config", "provenance", "verification")


@dataclass(frozen=True)
class StatePair:
    input: str  # e.g. past_key_0
    output: str  # e.g. present_key_0
    axis: int  # axis that holds the context (-1: fixed size, recurrent state)
    shape: list[Any]  # with symbolic names for dynamic axes
    # False: the output is the input grown by the new steps along ``axis``. True: a buffer
    # of fixed capacity along ``axis``; the graph also takes ``seqlens_k`` (int32 [batch],
    # tokens held after the step - 1) and ``total_sequence_length`` (int32 scalar, tokens
    # held after the step), reads rows [0, T) and writes the new rows [T-S, T) of the
    # output, which the caller may bind to the very memory of the input.
    inplace: bool = False


@dataclass(frozen=True)
class Signature:
    inputs: dict[str, list[Any]]  # name -> shape (ints and axis names)
    outputs: dict[str, list[Any]]
    state: list[StatePair] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "inputs": self.inputs,
            "outputs": self.outputs,
            "state": [vars(s) for s in self.state],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Signature:
        return cls(d["inputs"], d["outputs"], [StatePair(**s) for s in d.get("state", [])])


@dataclass(frozen=True)
class ModelInfo:
    family: str
    representation: str
    signature: Signature
    max_context: int
    vocab: list[str]
    grid: dict
    tokenizer: dict | None
    config: dict
    provenance: dict
    verification: dict

    def to_props(self) -> dict[str, str]:
        props = {
            "format": FORMAT,
            "family": self.family,
            "representation": self.representation,
            "signature": self.signature.to_dict(),
            "max_context": str(self.max_context),
            "tokenizer": self.tokenizer,
            "vocab": self.vocab,
            "grid": self.grid,
            "config": self.config,
            "provenance": self.provenance,
            "verification": self.verification,
        }
        return {
            PREFIX + k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in props.items()
            if v is not None
        }

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelInfo:
        """Parse and validate; a file that is not an antiphon model is a ``UserError``."""
        ours = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise UserError(
                f"{source}: an ONNX file without antiphon metadata (not exported by "
                "`antiphon export`); export a checkpoint with `antiphon export CKPT -o model.onnx`"
            )
        missing = [k for k in REQUIRED if k not in ours]
        if missing:
            raise UserError(f"{source}: antiphon metadata lacks {', '.join(missing)}; re-export it")
        if ours["format"] != FORMAT:
            raise UserError(
                f"{source}: metadata format {ours['format']} is not supported (expected {FORMAT})"
            )
        try:
            parsed = {k: json.loads(v) if k in JSON_KEYS else v for k, v in ours.items()}
            return cls(
                family=parsed["family"],
                representation=parsed["representation"],
                signature=Signature.from_dict(parsed["signature"]),
                max_context=int(parsed["max_context"]),
                vocab=list(parsed["vocab"]),
                grid=dict(parsed["grid"]),
                tokenizer=parsed.get("tokenizer"),
                config=parsed.get("config", {}),
                provenance=parsed.get("provenance", {}),
                verification=parsed.get("verification", {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{source}: corrupt antiphon metadata ({exc})") from None

    def describe(self) -> str:
        """What ``antiphon eval --model M`` prints: where the model came from and how its
        export was checked."""
        prov, ver = self.provenance, self.verification
        lines = [
            f"family {self.family} ({self.representation}), context {self.max_context}",
            f"config {json.dumps(self.config, sort_keys=True)}",
        ]
        corpus = prov.get("corpus") or {}
        if corpus:
            lines.append(f"corpus {corpus.get('name', '?')}: {json.dumps(corpus, sort_keys=True)}")
        if prov.get("steps") is not None:
            lines.append(f"trained {prov['steps']} steps")
        if prov.get("valid_nll") is not None:
            bigram = prov.get("bigram_valid_nll")
            vs = f" (bigram baseline {bigram:.4f})" if bigram is not None else ""
            lines.append(f"valid NLL/token {prov['valid_nll']:.4f}{vs}")
        if ver:
            lines.append(
                f"export verified: max abs diff {ver.get('max_abs_diff', float('nan')):.2e} "
                f"(tolerance {ver.get('tolerance')}), greedy tokens identical: "
                f"{ver.get('greedy_identical')}"
            )
        q = (prov.get("quantization") or {}).get("int8_dynamic")
        if q:
            lines.append(
                f"int8 dynamic quantization: teacher-forced top-1 agreement "
                f"{q['teacher_forced_agreement']:.1%}, greedy agreement "
                f"{q['greedy_agreement']:.0%}, NLL/token {q['nll_fp32']:.4f} -> "
                f"{q['nll_int8']:.4f} ({q['nll_change']:+.4f}) on {q['eval_tokens']} tokens "
                f"of {q['eval_source']}"
            )
        return "\n".join(lines)
