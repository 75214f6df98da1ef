"""MuseGAN's objective metrics of multi-track piano rolls (Dong et al. 2018, Tables 1-2).

Rolls are ``(N, tracks, bars, steps, pitches)``, binary. Per track, over all bars:

- ``empty_bars``: the share of bars with no note (EB);
- ``pitch_classes``: pitch classes used in a bar, averaged over the non-empty bars (UPC);
- ``qualified_notes``: the share of notes at least ``threshold`` steps long (QN). The paper's
  threshold is 3 steps of its 24 a beat (a 32nd note); here it is rescaled to the roll's
  grid, ``ceil(3 * steps_per_beat / 24)`` steps (2 at 12 a beat). A note is a run of
  sounding steps within a bar, as in MuseGAN's code;

and per pair of tracks ``tonal_distance`` (TD, Harte et al. 2006): the distance between the
6-D tonal centroids of the two tracks' pitch-class profiles, beat by beat, averaged over
the beats where both sound (smaller: more harmonically related). Only numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

PAPER_STEPS_PER_BEAT = 24
PAPER_QN_STEPS = 3


def qualified_threshold(steps_per_beat: int) -> int:
    return max(1, math.ceil(PAPER_QN_STEPS * steps_per_beat / PAPER_STEPS_PER_BEAT))


def tonal_matrix(r1: float = 1.0, r2: float = 1.0, r3: float = 0.5) -> np.ndarray:
    """(6, 12): fifths, minor thirds, major thirds circles (Harte et al.'s radii)."""
    k = np.arange(12)
    return np.stack(
        [
            r1 * np.sin(k * 7 * np.pi / 6), r1 * np.cos(k * 7 * np.pi / 6),
            r2 * np.sin(k * 3 * np.pi / 2), r2 * np.cos(k * 3 * np.pi / 2),
            r3 * np.sin(k * 2 * np.pi / 3), r3 * np.cos(k * 2 * np.pi / 3),
        ]
    )  # fmt: skip


def chroma(roll: np.ndarray, pitch_lo: int) -> np.ndarray:
    """(..., pitches) -> (..., 12) counts per pitch class."""
    pitches = roll.shape[-1]
    out = np.zeros((*roll.shape[:-1], 12))
    for k in range(pitches):
        out[..., (pitch_lo + k) % 12] += roll[..., k]
    return out


def empty_bars(rolls: np.ndarray) -> np.ndarray:
    """(tracks,) share of empty bars."""
    return (~rolls.any(axis=(3, 4))).mean(axis=(0, 2))


def pitch_classes(rolls: np.ndarray, pitch_lo: int) -> np.ndarray:
    """(tracks,) pitch classes used per non-empty bar."""
    used = (chroma(rolls.any(axis=3), pitch_lo) > 0).sum(-1)  # (N, tracks, bars)
    sounding = rolls.any(axis=(3, 4))
    return np.array([used[:, t][sounding[:, t]].mean() if sounding[:, t].any() else np.nan
                     for t in range(rolls.shape[1])])  # fmt: skip


def note_lengths(bar: np.ndarray) -> np.ndarray:
    """Lengths (steps) of the runs of sounding steps of a (steps, pitches) bar."""
    padded = np.vstack([np.zeros((1, bar.shape[1]), np.int8), bar.astype(np.int8),
                        np.zeros((1, bar.shape[1]), np.int8)])  # fmt: skip
    d = np.diff(padded, axis=0)
    starts, ends = np.nonzero(d.T > 0), np.nonzero(d.T < 0)
    return ends[1] - starts[1]  # both in (pitch, step) order: runs pair up


def qualified_notes(rolls: np.ndarray, threshold: int) -> np.ndarray:
    """(tracks,) share of notes at least ``threshold`` steps long."""
    out = []
    for t in range(rolls.shape[1]):
        lengths = np.concatenate(
            [
                note_lengths(rolls[n, t, b])
                for n in range(rolls.shape[0])
                for b in range(rolls.shape[2])
            ]
        )
        out.append(float((lengths >= threshold).mean()) if len(lengths) else np.nan)
    return np.array(out)


def tonal_distance(rolls: np.ndarray, a: int, b: int, steps_per_beat: int, pitch_lo: int) -> float:
    """Mean tonal-centroid distance of tracks ``a`` and ``b``, beat by beat."""
    N, _, bars, steps, _ = rolls.shape
    beats = rolls.reshape(N, rolls.shape[1], bars * steps // steps_per_beat, steps_per_beat, -1)
    ca, cb = chroma(beats[:, a].sum(2), pitch_lo), chroma(beats[:, b].sum(2), pitch_lo)
    both = (ca.sum(-1) > 0) & (cb.sum(-1) > 0)
    if not both.any():
        return float("nan")
    tm = tonal_matrix()
    pa = ca[both] / ca[both].sum(-1, keepdims=True)
    pb = cb[both] / cb[both].sum(-1, keepdims=True)
    return float(np.linalg.norm(pa @ tm.T - pb @ tm.T, axis=-1).mean())


@dataclass
class RollMetrics:
    samples: int
    empty_bars: list[float]
    pitch_classes: list[float]
    qualified_notes: list[float]
    tonal_distance: dict[str, float] = field(default_factory=dict)  # "0-1": ...
    qn_threshold: int = 1

    def to_dict(self) -> dict:
        return vars(self).copy()


def roll_metrics(rolls: np.ndarray, steps_per_beat: int, pitch_lo: int) -> RollMetrics:
    rolls = np.asarray(rolls).astype(bool)
    tracks = rolls.shape[1]
    threshold = qualified_threshold(steps_per_beat)
    pairs = {f"{a}-{b}": tonal_distance(rolls, a, b, steps_per_beat, pitch_lo)
             for a in range(tracks) for b in range(a + 1, tracks)}  # fmt: skip
    return RollMetrics(
        samples=len(rolls),
        empty_bars=empty_bars(rolls).tolist(),
        pitch_classes=pitch_classes(rolls, pitch_lo).tolist(),
        qualified_notes=qualified_notes(rolls, threshold).tolist(),
        tonal_distance=pairs,
        qn_threshold=threshold,
    )


def metrics_table(rows: dict[str, RollMetrics], names: list[str]) -> str:
    """Markdown: one row per set (training data, models), a column per track and metric."""
    head = ["set"]
    head += [f"EB {n}" for n in names] + [f"UPC {n}" for n in names] + [f"QN {n}" for n in names]
    pairs = list(next(iter(rows.values())).tonal_distance)
    head += [f"TD {names[int(p.split('-')[0])]}-{names[int(p.split('-')[1])]}" for p in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for label, m in rows.items():
        cells = [f"{100 * x:.1f} %" for x in m.empty_bars]
        cells += [f"{x:.2f}" for x in m.pitch_classes]
        cells += [f"{100 * x:.1f} %" for x in m.qualified_notes]
        cells += [f"{m.tonal_distance[p]:.3f}" for p in pairs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
