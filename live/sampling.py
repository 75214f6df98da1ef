"""Choosing the next token: temperature, nucleus (top-p), a grammar mask, a seeded RNG."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sampling:
    temperature: float = 1.0  # 0: greedy
    top_p: float = 0.95
    seed: int | None = None
    # How close a variation stays to the phrase it varies (models that vary a phrase: 1 =
    # the same phrase, 0 = anything; ``live.vae_voice``)
    similarity: float = 0.5

    def validate(self) -> Sampling:
        from antiphon.errors import UserError

        if self.temperature < 0:
            raise UserError("--temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise UserError("--top-p must be in (0, 1]")
        if not 0 <= self.similarity <= 1:
            raise UserError("--similarity must be in [0, 1]")
        return self


class Sampler:
    def __init__(self, sampling: Sampling) -> None:
        self.sampling = sampling
        self.rng = np.random.default_rng(sampling.seed)

    def reseed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> int:
        # Runs once per generated token on the daemon's hot path: a few vector ops over the
        # vocabulary, no per-call allocations beyond them, one uniform draw.
        logits = np.asarray(logits, dtype=np.float64)
        if allowed is not None:
            logits = np.where(allowed, logits, -np.inf)
        t = self.sampling.temperature
        if t <= 0:
            return int(np.argmax(logits))
        probs = np.exp((logits - logits.max()) / t)
        order = np.argsort(-probs)
        cum = np.cumsum(probs[order])
        # the smallest set whose mass reaches top_p (always at least one token)
        keep = int(np.searchsorted(cum, self.sampling.top_p * cum[-1])) + 1
        r = self.rng.random() * cum[keep - 1]
        return int(order[min(int(np.searchsorted(cum[:keep], r, side="right")), keep - 1)])
