from __future__ import annotations

import numpy as np
import pytest

from antiphon.errors import UserError
from antiphon.live.sampling import Sampler, Sampling

LOGITS = np.random.default_rng(0).normal(size=64).astype(np.float32) * 3


def nucleus(logits: np.ndarray, allowed: np.ndarray, top_p: float, t: float = 1.0) -> np.ndarray:
    p = np.exp((np.where(allowed, logits, -np.inf) - logits.max()) / t)
    p /= p.sum()
    order = np.argsort(-p)
    keep = np.searchsorted(np.cumsum(p[order]), top_p) + 1
    q = np.zeros_like(p)
    q[order[:keep]] = p[order[:keep]]
    return q / q.sum()


@pytest.mark.parametrize(("top_p", "t"), [(0.9, 1.0), (1.0, 1.0), (0.5, 0.7), (0.95, 1.5)])
def test_draws_follow_the_tempered_nucleus(top_p: float, t: float) -> None:
    allowed = np.ones(64, dtype=bool)
    allowed[::7] = False
    s = Sampler(Sampling(temperature=t, top_p=top_p, seed=1))
    draws = np.bincount([s(LOGITS, allowed) for _ in range(20000)], minlength=64) / 20000
    expected = nucleus(LOGITS, allowed, top_p, t)
    assert draws[expected == 0].sum() == 0  # never outside the nucleus or the mask
    assert np.abs(draws - expected).max() < 0.02


def test_greedy_seeded_and_validated() -> None:
    allowed = np.ones(64, dtype=bool)
    allowed[int(np.argmax(LOGITS))] = False
    greedy = Sampler(Sampling(temperature=0))
    assert greedy(LOGITS, allowed) == int(np.argmax(np.where(allowed, LOGITS, -np.inf)))
    a, b = Sampler(Sampling(seed=5)), Sampler(Sampling(seed=5))
    assert [a(LOGITS) for _ in range(50)] == [b(LOGITS) for _ in range(50)]
    for bad in (Sampling(temperature=-1), Sampling(top_p=0), Sampling(top_p=1.5)):
        with pytest.raises(UserError):
            bad.validate()
