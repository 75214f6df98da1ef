"""Validation NLL per token, for a model and for the bigram (Markov) baseline it must beat.

Both score the same predictions: every token of every piece after its leading BOS, each
given what precedes it in that piece (the model sees at most ``block`` tokens of context;
windows overlap by half so every prediction after the first window has at least half a
window of context).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from antiphon.models.dataset import TokenSplit

# log-probabilities (S, V) for a window of S tokens: row i predicts token i+1
WindowScorer = Callable[[np.ndarray], np.ndarray]


def windows(n: int, block: int) -> Iterable[tuple[int, int, int]]:
    """(start, end, first scored index) for windows over a piece of n tokens."""
    if n <= block + 1:
        yield 0, n, 1
        return
    stride = block // 2
    start = 0
    scored_to = 1
    while True:
        end = min(start + block + 1, n)
        yield start, end, scored_to
        scored_to = end
        if end == n:
            return
        start = min(start + stride, n - block - 1)


def model_nll(score: WindowScorer, split: TokenSplit, block: int, max_pieces: int | None = None):
    """Mean NLL (nats/token) of a model over a split, and the number of tokens scored."""
    total, count = 0.0, 0
    for i, piece in enumerate(split):
        if max_pieces is not None and i >= max_pieces:
            break
        for start, end, first in windows(len(piece), block):
            w = piece[start:end]
            logp = score(w[:-1])  # (S, V)
            targets = w[1:]
            rows = np.arange(first - start - 1, len(targets))
            total -= float(logp[rows, targets[rows]].sum())
            count += len(rows)
    return total / max(count, 1), count


class Bigram:
    """Add-alpha smoothed bigram counts fitted on the training split."""

    def __init__(self, vocab_size: int, alpha: float = 0.1) -> None:
        self.counts = np.zeros((vocab_size, vocab_size), dtype=np.float64)
        self.alpha = alpha

    def fit(self, split: TokenSplit) -> Bigram:
        for piece in split:
            np.add.at(self.counts, (piece[:-1], piece[1:]), 1.0)
        return self

    def log_probs(self, alpha: float | None = None) -> np.ndarray:
        a = self.alpha if alpha is None else alpha
        c = self.counts + a
        return np.log(c / c.sum(axis=1, keepdims=True))

    def nll(self, split: TokenSplit, alpha: float | None = None) -> tuple[float, int]:
        lp = self.log_probs(alpha)
        total, count = 0.0, 0
        for piece in split:
            total -= float(lp[piece[:-1], piece[1:]].sum())
            count += len(piece) - 1
        return total / max(count, 1), count

    def best_nll(self, split: TokenSplit) -> tuple[float, float]:
        """The baseline at its best smoothing on this split (the strongest fair opponent)."""
        best = min((self.nll(split, a)[0], a) for a in (1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0))
        return best[0], best[1]


def perplexity(nll: float) -> float:
    return math.exp(nll)
