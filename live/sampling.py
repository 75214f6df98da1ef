"""Choosing the next token: temperature, nucleus (top-p), a grammar mask, a seeded RNG."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sampling:
    temperature: float = 1.0  # 0: greedy
    top_p: float = 0.95
    seed: int | None = None

    def validate(self) -> Sampling:
        from antiphon.errors import UserError

        if self.temperature < 0:
            raise UserError("--temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise UserError("--top-p must be in (0, 1]")
        return self


class Sampler:
    def __init__(self, sampling: Sampling) -> None:
        self.sampling = sampling
        self.rng = np.random.default_rng(sampling.seed)

    def reseed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> int:
        logits = logits.astype(np.float64, copy=True)
        if allowed is not None:
            logits[~allowed] = -np.inf
        t = self.sampling.temperature
        if t <= 0:
            return int(np.argmax(logits))
        logits /= t
        logits -= logits.max()
        probs = np.exp(logits)
        probs /= probs.sum()
        if self.sampling.top_p < 1.0:
            order = np.argsort(-probs)
            cum = np.cumsum(probs[order])
            # keep the smallest set whose mass reaches top_p (always at least one token)
            keep = order[: int(np.searchsorted(cum, self.sampling.top_p)) + 1]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        return int(self.rng.choice(len(probs), p=probs))
