"""MuseGAN's objective metrics of multi-track piano rolls (Dong et al. 2018, Tables 1-2).

Rolls are ``(N, tracks, bars, steps, pitches)``, binary. Per track, over all bars:

- ``empty_bars``: the share of bars with no note (EB);
- ``pitch_classes``: pitch classes used in a bar, averaged over the non-empty bars (UPC);
- ``qualified_notes``: the share of notes at least ``threshold`` steps long (QN). The paper's
  threshold is 3 steps of its 24 a beat (a 32nd note); here it is rescaled to the roll's
  grid, ``ceil(3 * steps_per_beat / 24)`` steps (2 at 12 a beat). A note is a run of
  sounding steps within a bar, as in MuseGAN's code;

- ``notes_per_bar``: notes struck per bar (a key starting to sound), averaged over all bars:
  the pace, which the paper does not measure; a voice in running sixteenths under a hymn
  shows here first;

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


def notes_per_bar(rolls: np.ndarray) -> np.ndarray:
    """(tracks,) notes struck per bar: keys that sound at a step and did not at the one
    before (a note held over the barline is struck once, in the bar it starts)."""
    r = rolls.reshape(*rolls.shape[:2], -1, rolls.shape[-1])  # (N, tracks, bars * steps, P)
    before = np.concatenate((np.zeros_like(r[:, :, :1]), r[:, :, :-1]), axis=2)
    struck = (r & ~before).sum(axis=(2, 3))  # (N, tracks)
    return struck.mean(axis=0) / rolls.shape[2]


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
    notes_per_bar: list[float] = field(default_factory=list)

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
        notes_per_bar=notes_per_bar(rolls).tolist(),
    )


def metrics_table(rows: dict[str, RollMetrics], names: list[str]) -> str:
    """Markdown: one row per set (training data, models), a column per track and metric."""
    head = ["set"]
    head += [f"EB {n}" for n in names] + [f"UPC {n}" for n in names] + [f"QN {n}" for n in names]
    head += [f"notes {n}" for n in names]
    pairs = list(next(iter(rows.values())).tonal_distance)
    head += [f"TD {names[int(p.split('-')[0])]}-{names[int(p.split('-')[1])]}" for p in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for label, m in rows.items():
        cells = [f"{100 * x:.1f} %" for x in m.empty_bars]
        cells += [f"{x:.2f}" for x in m.pitch_classes]
        cells += [f"{100 * x:.1f} %" for x in m.qualified_notes]
        cells += [f"{x:.2f}" for x in m.notes_per_bar]
        cells += [f"{m.tonal_distance[p]:.3f}" for p in pairs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# MuseGAN's Tables 1 and 2 (Dong et al. 2018), read from the paper (salu133445/musegan,
# docs/pdf/musegan-aaai2018-paper.pdf): LPD's training data and the hybrid model, from
# scratch and track-conditional (piano given), per track (bass, drums, guitar, piano,
# strings; no UPC/QN for drums) and per pair of tracks for TD (B-G, B-S, B-P, G-S, G-P, S-P).
# EB and QN in percent. None: not measured there.
PAPER: dict[str, dict[str, list[float | None]]] = {
    "data": {
        "EB": [8.06, 8.06, 19.4, 24.8, 10.1],
        "UPC": [1.71, None, 3.08, 3.28, 3.38],
        "QN": [90.0, None, 81.9, 88.4, 89.6],
        "TD": [1.57, 1.58, 1.51, 1.10, 1.02, 1.04],
    },
    "hybrid": {
        "EB": [2.14, 29.7, 11.7, 17.8, 6.04],
        "UPC": [2.35, None, 4.76, 5.45, 5.24],
        "QN": [44.6, None, 43.2, 45.5, 52.0],
        "TD": [1.34, 1.35, 1.32, 0.85, 0.85, 0.83],
    },
    "hybrid, track-conditional": {
        "EB": [2.09, 4.53, 10.3, None, 4.05],
        "UPC": [2.86, None, 4.43, None, 4.32],
        "QN": [43.3, None, 55.6, None, 67.1],
        "TD": [1.39, 1.36, 1.38, 0.96, 0.94, 0.95],
    },
}
GAP_METRICS = ("EB", "UPC", "QN", "TD")


def _by_metric(m: RollMetrics, skip: int | None = None) -> dict[str, list[float | None]]:
    """Ours in the paper's units (EB, QN in percent); ``skip``: the given track, left out of
    the per-track metrics as the paper's conditional rows leave it (its pairs stay in TD:
    how the generated voices sit with the given one is the point of accompaniment)."""
    keep = lambda xs: [None if i == skip else x for i, x in enumerate(xs)]  # noqa: E731
    return {
        "EB": keep([100 * x for x in m.empty_bars]),
        "UPC": keep(list(m.pitch_classes)),
        "QN": keep([100 * x for x in m.qualified_notes]),
        "TD": list(m.tonal_distance.values()),
    }


def mean_gap(model: dict[str, list[float | None]], data: dict[str, list[float | None]]) -> dict:
    """Per metric, the mean over tracks (pairs for TD) of |model - data| where both exist.
    A track the model left silent has no UPC or QN of its own: it counts as 0 (no pitch
    class used, no note qualified), so silence never looks close."""
    out: dict[str, float | None] = {}
    for k in GAP_METRICS:
        gaps = []
        for x, d in zip(model[k], data[k], strict=True):
            if d is None or x is None:
                continue
            if math.isnan(x):
                if k in ("UPC", "QN"):
                    gaps.append(abs(d))
                continue
            gaps.append(abs(x - d))
        out[k] = float(np.mean(gaps)) if gaps else None
    return out


def paper_comparison(
    data: RollMetrics, scratch: RollMetrics, around: RollMetrics, given: int
) -> dict:
    """How far each of our sets lies from our data, beside how far the paper's hybrid model
    lies from its data (the issue's bar: closer on every metric). Absolute gaps, in each
    metric's units: the datasets differ (LPD's pop against four-voice chorales), so the
    question is how close each model comes to what it learnt from."""
    ours = _by_metric(data)
    paper_scratch = mean_gap(PAPER["hybrid"], PAPER["data"])
    paper_cond = mean_gap(PAPER["hybrid, track-conditional"], PAPER["data"])
    our_scratch = mean_gap(_by_metric(scratch), ours)
    our_cond = mean_gap(_by_metric(around, skip=given), _by_metric(data, skip=given))
    rows = {}
    for k in GAP_METRICS:
        rows[k] = {
            "scratch": our_scratch[k],
            "paper_hybrid": paper_scratch[k],
            "conditional": our_cond[k],
            "paper_hybrid_conditional": paper_cond[k],
        }
    closer = all(
        r[a] is not None and r[b] is not None and r[a] < r[b]
        for r in rows.values()
        for a, b in (("scratch", "paper_hybrid"), ("conditional", "paper_hybrid_conditional"))
    )
    return {"gaps": rows, "closer_than_paper_on_every_metric": closer}


def comparison_table(cmp: dict) -> str:
    """Markdown: each metric's mean distance from the training data, ours beside the paper's."""
    f = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    lines = [
        "| mean gap to the training data | ours, from scratch | MuseGAN hybrid (paper) "
        "| ours, accompanying | hybrid, track-conditional (paper) |",
        "|---|---:|---:|---:|---:|",
    ]
    units = {"EB": "EB (points)", "UPC": "UPC", "QN": "QN (points)", "TD": "TD"}
    for k, r in cmp["gaps"].items():
        cells = [r["scratch"], r["paper_hybrid"], r["conditional"], r["paper_hybrid_conditional"]]
        lines.append(f"| {units[k]} | " + " | ".join(f(x) for x in cells) + " |")
    verdict = "closer" if cmp["closer_than_paper_on_every_metric"] else "not closer"
    lines.append(f"\nours is {verdict} to its data than the paper's hybrid on every metric")
    return "\n".join(lines)
