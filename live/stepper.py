"""Keeps a token model's state (KV cache or recurrent state) in step with a token stream.

Works over any ``run(feed) -> outputs`` on named numpy arrays, so the daemon drives
onnxruntime with it and export verification drives torch and onnxruntime with the very same
code. States are immutable values: a snapshot is a reference, a rollback is an assignment
(the speculative response and barge-in rely on that).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from antiphon.export.metadata import Signature

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class State:
    position: int = 0  # absolute position of the next token (RoPE keeps counting past the window)
    length: int = 0  # tokens held in the cache
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    last_logits: np.ndarray | None = None  # (V,) prediction for the next token


class TokenStepper:
    def __init__(self, run: RunFn, signature: Signature, max_context: int) -> None:
        self.run = run
        self.signature = signature
        self.max_context = max_context
        self.uses_positions = "positions" in signature.inputs
        self.pairs = signature.state
        self.grows = [p for p in self.pairs if p.axis >= 0]

    def empty(self) -> State:
        arrays = {}
        for p in self.pairs:
            shape = [1 if d == "batch" else 0 if isinstance(d, str) else d for d in p.shape]
            arrays[p.input] = np.zeros(shape, dtype=np.float32)
        return State(arrays=arrays)

    def feed(self, state: State, tokens: Sequence[int]) -> State:
        """Advance by ``tokens`` (one or many); slides the window first if it would overflow."""
        if not tokens:
            return state
        if len(tokens) > self.max_context:
            # Only the most recent part of a long prompt fits; earlier tokens cannot matter.
            skipped = len(tokens) - self.max_context
            state, tokens = self.empty_at(state.position + skipped), tokens[skipped:]
        state = self.slide(state, room=len(tokens))
        feed = dict(state.arrays)
        feed["tokens"] = np.asarray([tokens], dtype=np.int64)
        if self.uses_positions:
            feed["positions"] = np.arange(
                state.position, state.position + len(tokens), dtype=np.int64
            )[None]
        out = self.run(feed)
        arrays = {p.input: out[p.output] for p in self.pairs}
        return State(
            position=state.position + len(tokens),
            length=state.length + len(tokens) if self.grows else 0,
            arrays=arrays,
            last_logits=out["logits"][0, -1],
        )

    def empty_at(self, position: int) -> State:
        return State(position=position, arrays=self.empty().arrays)

    def slide(self, state: State, room: int) -> State:
        """Drop the oldest cached tokens so that ``room`` more fit in the window.

        A slide copies the whole cache, so it drops an eighth of the window at once rather
        than one token per step: the copy happens once per ``max_context // 8`` steps and
        the model always keeps at least 7/8 of its window."""
        if not self.grows:
            return state
        excess = state.length + room - self.max_context
        if excess <= 0:
            return state
        excess = min(state.length, max(excess, self.max_context // 8))
        arrays = dict(state.arrays)
        for p in self.grows:
            index = [slice(None)] * arrays[p.input].ndim
            index[p.axis] = slice(excess, None)
            arrays[p.input] = np.ascontiguousarray(arrays[p.input][tuple(index)])
        return State(state.position, state.length - excess, arrays, state.last_logits)


def greedy(stepper: TokenStepper, prompt: Sequence[int], n: int) -> list[int]:
    """n greedy tokens after a prompt (export verification compares torch and onnxruntime)."""
    state = stepper.feed(stepper.empty(), list(prompt))
    out = []
    for _ in range(n):
        assert state.last_logits is not None
        token = int(np.argmax(state.last_logits))
        out.append(token)
        state = stepper.feed(state, [token])
    return out
