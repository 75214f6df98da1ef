"""``antiphon eval --polyphonic``: frame NLL of a piano-roll model on a benchmark split.

The score of Boulanger-Lewandowski et al. (2012) as ``shared/data/README.md`` defines it:
for every frame, the natural-log negative log-probability of the whole 88-key binary vector
given all earlier frames of its piece, averaged over all frames of the split; the first
frame of a piece is predicted from the empty history (the zero state). Computed with
onnxruntime on the exported file alone: the graph's ``logits[s, i]`` is key i of frame s
given the history and the keys below i, so one pass over the real frames gives the exact
log-probability for either head.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from antiphon.errors import UserError
from antiphon.live.session import ModelFile
from antiphon.models.midi.polyphonic import benchmark_split

CHUNK = 512  # frames per run: bounds the NADE head's memory on long pieces; state carries


def frame_logits(model: ModelFile, roll: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Key logits ``(T, K)`` of one piece ``(T, K)`` read from the empty state: key i of
    frame s given the frames before s and the keys of frame s below i."""
    pairs = model.info.signature.state
    state = {
        p.input: np.zeros([1 if d == "batch" else d for d in p.shape], np.float32) for p in pairs
    }
    out = np.zeros(roll.shape, dtype=np.float64)
    for c in range(0, len(roll), chunk):
        x = roll[c : c + chunk].astype(np.float32)
        res = model.run({"frames": x[None], **state})
        out[c : c + len(x)] = res["logits"][0]
        state = {p.input: res[p.output] for p in pairs}
    return out


def frame_nlls(model: ModelFile, roll: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """NLL (nats) of each frame of one piece ``(T, K)``, from the empty state."""
    return bernoulli_nll(frame_logits(model, roll, chunk), roll)


def bernoulli_nll(logits: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """NLL of each frame's keys given their logits (T, K) -> (T,)."""
    # -log p(x | logit) for a Bernoulli with logit l: softplus(l) - x * l, stably
    return (np.logaddexp(0.0, logits) - roll * logits).sum(-1)


def evaluate_polyphonic(
    path: str | Path, split: str, model: str | Path, *, provider: str = "auto"
) -> dict:
    """Mean frame NLL of ``model`` (.onnx) on ``split`` of benchmark file ``path``."""
    mf = ModelFile.open(model, provider=provider)
    info = mf.info
    if info.representation != "frames":
        raise UserError(
            f"{mf.path}: a {info.family} model ({info.representation}) does not score piano-roll "
            "frames; export a pianoroll-gru or pianoroll-lstm checkpoint"
        )
    cfg = info.config
    pieces = benchmark_split(path, split, int(cfg["pitch_lo"]), int(cfg["n_keys"]))
    if not pieces:
        raise UserError(f"{path}: split {split!r} holds no pieces")
    t0 = time.perf_counter()
    total, frames = 0.0, 0
    for roll in pieces:
        total += float(frame_nlls(mf, roll).sum())
        frames += len(roll)
    return {
        "file": str(path),
        "split": split,
        "model": str(mf.path),
        "family": info.family,
        "head": cfg.get("head"),
        "nll": total / max(frames, 1),
        "frames": frames,
        "pieces": len(pieces),
        "seconds": round(time.perf_counter() - t0, 3),
    }
