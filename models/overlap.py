"""How close two sets of pieces are, metric by metric: kernel densities and overlapping areas.

Following Yang & Lerch 2019 ("On the evaluation of generative models in music"), each metric's
values over the pieces of a set are smoothed with a Gaussian kernel density estimate
(``scipy.stats.gaussian_kde``, Scott's bandwidth) and the overlapping area of two sets is
``OA = ∫ min(p_gen, p_ref) dx`` on a grid covering both (1: same distribution, 0: disjoint).

A set whose values are all equal (or a single piece) has no spread to estimate a bandwidth
from. It becomes a kernel of the other set's bandwidth at its value, as if smoothed at the
other set's resolution; if both sets are constant the kernels are spikes and OA is 1 when
the values are equal and 0 otherwise. A metric that is undefined for every piece of a set
(e.g. groove consistency of one-bar pieces) has no OA (NaN, ``None`` in JSON).

Yang & Lerch's own comparison is also computed: per metric the intra-set distances (absolute
pairwise differences within a set; Euclidean for the pitch-class histogram), the inter-set
distances (every generated piece against every reference piece), and the OA and KL divergence
(nats) between each set's intra-set and the inter-set distance densities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from antiphon.errors import UserError
from antiphon.models.metrics import (
    LONG_NOTE_BEATS,
    METRICS,
    PieceMetrics,
    SetMetrics,
    length_summary,
)

# Each density gets its own grid over its values +- TAIL bandwidths, spaced a third of its
# bandwidth (GRID_POINTS..MAX_GRID_POINTS points), where sums of Gaussians are near exact;
# the shared grid is their union, so a narrow set beside a wide one is still resolved.
GRID_POINTS = 1024
MAX_GRID_POINTS = 16384
TAIL = 6.0  # bandwidths of grid beyond the extreme values: the kernel mass left out is ~1e-9
MAX_DISTANCES = 1000  # pairwise distances kept per distribution (a seeded random subset)
MAX_POOLED = 4000  # note lengths kept per set for the pooled OA (a seeded random subset)
KL_FLOOR = 1e-12  # density floor so disjoint distributions give a large, finite KL
PCH = "pitch_class_histogram"


def _gaussian_kde() -> Any:
    try:
        from scipy.stats import gaussian_kde
    except ImportError:
        raise UserError(
            "antiphon eval needs scipy and matplotlib: pip install 'antiphon[eval]'"
        ) from None
    return gaussian_kde


@dataclass(frozen=True)
class Density:
    """A 1-D Gaussian KDE, or a single kernel (bandwidth 0: a spike) for a constant set."""

    values: np.ndarray
    bandwidth: float  # standard deviation of the kernel, in the metric's units
    kde: Any = None  # scipy.stats.gaussian_kde when the values have spread

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kde is not None:
            return self.kde(x)
        h = self.bandwidth
        z = (x - self.values[0]) / h
        return np.exp(-0.5 * z * z) / (h * math.sqrt(2 * math.pi))


def density(values: Sequence[float] | np.ndarray, bandwidth: float | None = None) -> Density:
    """The KDE of a set of values; constant sets get a kernel of ``bandwidth`` (0: a spike)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite values to estimate a density from")
    if v.size > 1 and np.ptp(v) > 1e-12 * max(1.0, float(np.abs(v).max())):
        try:
            kde = _gaussian_kde()(v)
            return Density(v, float(math.sqrt(kde.covariance[0, 0])), kde)
        except np.linalg.LinAlgError:  # spread too small to invert: treat as constant
            pass
    return Density(v[:1], float(bandwidth or 0.0))


def densities(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(grid, p_a, p_b) on a grid covering both, or None when both sets are constant."""
    da, db = density(a), density(b)
    if da.kde is None and db.kde is None:
        return None
    if da.kde is None:
        da = density(da.values, db.bandwidth)
    if db.kde is None:
        db = density(db.values, da.bandwidth)
    x = np.unique(np.concatenate([_support(da), _support(db)]))
    return x, da(x), db(x)


def _support(d: Density) -> np.ndarray:
    lo, hi = d.values.min() - TAIL * d.bandwidth, d.values.max() + TAIL * d.bandwidth
    n = np.clip(math.ceil(3 * (hi - lo) / d.bandwidth) + 1, GRID_POINTS, MAX_GRID_POINTS)
    return np.linspace(lo, hi, int(n))


def trapezoid_weights(x: np.ndarray) -> np.ndarray:
    """w with sum(w * f(x)) the trapezoid rule on the (non-uniform) grid x."""
    w = np.zeros_like(x)
    dx = np.diff(x)
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return w


def overlap_and_kl(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """(OA, KL(p_a || p_b) in nats) of the two value sets' KDEs; NaNs if a set is empty."""
    a, b = _finite(a), _finite(b)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan
    d = densities(a, b)
    if d is None:  # two spikes
        same = math.isclose(a[0], b[0], rel_tol=1e-9, abs_tol=1e-12)
        return (1.0, 0.0) if same else (0.0, math.inf)
    x, pa, pb = d
    w = trapezoid_weights(x)
    oa = float(np.clip(np.sum(np.minimum(pa, pb) * w), 0.0, 1.0))
    qa, qb = np.maximum(pa * w, KL_FLOOR), np.maximum(pb * w, KL_FLOOR)
    qa, qb = qa / qa.sum(), qb / qb.sum()
    return oa, float(np.sum(qa * np.log(qa / qb)))


def overlap_area(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """∫ min(p_a, p_b) of the two value sets' KDEs, in [0, 1]; NaN if a set is empty."""
    return overlap_and_kl(a, b)[0]


def kl_divergence(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """KL(p_a || p_b) in nats between the two value sets' KDEs, on the shared grid."""
    return overlap_and_kl(a, b)[1]


def _finite(v: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float).ravel()
    return v[np.isfinite(v)]


# -- sets of pieces ----------------------------------------------------------------------
Pieces = SetMetrics | Sequence[PieceMetrics]


def _values(pieces: Pieces, name: str) -> np.ndarray:
    items = pieces.pieces if isinstance(pieces, SetMetrics) else pieces
    if name == PCH:
        return np.array([p.pitch_class_histogram for p in items], dtype=float).reshape(-1, 12)
    return _finite([p.values[name] for p in items])


def overlap_areas(gen: Pieces, ref: Pieces) -> dict[str, float]:
    """The OA of the generated and reference distributions of every metric (NaN if undefined)."""
    return {name: overlap_area(_values(gen, name), _values(ref, name)) for name in METRICS}


def _pairwise(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Distances between rows: all pairs i<j within x, or every (x_i, y_j) across sets."""
    x = x.reshape(len(x), -1)  # (N, D): D=1 for a scalar metric, 12 for the histogram
    if y is None:
        i, j = np.triu_indices(len(x), k=1)
        d = np.linalg.norm(x[i] - x[j], axis=1)
    else:
        y = y.reshape(len(y), -1)
        d = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2).ravel()
    if d.size > MAX_DISTANCES:  # bounds the KDE's cost; seeded so reports are reproducible
        d = np.random.default_rng(0).choice(d, MAX_DISTANCES, replace=False)
    return d


def set_distances(gen: Pieces, ref: Pieces) -> dict[str, dict[str, float]]:
    """Yang & Lerch's intra-set vs inter-set comparison, per metric and for the histogram.

    For each set: OA and KL(intra || inter) between its intra-set distances and the inter-set
    distances. A generated set close to the reference has intra ≈ inter (OA near 1, KL near 0).
    """
    out: dict[str, dict[str, float]] = {}
    for name in [*METRICS, PCH]:
        g, r = _values(gen, name), _values(ref, name)
        if len(g) < 2 or len(r) < 2:
            out[name] = dict.fromkeys(
                ("oa_generated", "kl_generated", "oa_reference", "kl_reference"), math.nan
            )
            continue
        inter = _pairwise(g, r)
        intra_g, intra_r = _pairwise(g), _pairwise(r)
        oa_g, kl_g = overlap_and_kl(intra_g, inter)
        oa_r, kl_r = overlap_and_kl(intra_r, inter)
        out[name] = {
            "oa_generated": oa_g,
            "kl_generated": kl_g,
            "oa_reference": oa_r,
            "kl_reference": kl_r,
        }
    return out


# -- the report --------------------------------------------------------------------------
@dataclass
class MetricsReport:
    generated: SetMetrics
    reference: SetMetrics
    oa: dict[str, float]
    distances: dict[str, dict[str, float]]
    plots: list[str] = field(default_factory=list)

    @property
    def mean_oa(self) -> float:
        """The mean OA over the metrics that have one (NaN if none)."""
        finite = [v for v in self.oa.values() if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    def summary(self, which: str, name: str) -> dict[str, float]:
        v = (self.generated if which == "generated" else self.reference).values(name)
        if v.size == 0:
            return {"mean": math.nan, "std": math.nan, "n": 0}
        return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}

    def pooled(self) -> dict[str, Any]:
        """Every note and every instant of each set pooled: the note-length summary of
        ``length_summary``, the share of time at each number of notes sounding, and their
        OAs (note lengths on a log scale, as durations are heard; the counts directly)."""
        gen, ref = self.generated.note_lengths(), self.reference.note_lengths()
        pg, pr = self.generated.polyphony_share(), self.reference.polyphony_share()
        width = max(len(pg), len(pr))
        pg, pr = np.pad(pg, (0, width - len(pg))), np.pad(pr, (0, width - len(pr)))
        return {
            "note_length": {
                "generated": length_summary(gen),
                "reference": length_summary(ref),
                "oa": overlap_area(_log_subset(gen), _log_subset(ref)),
            },
            "polyphony_share": {
                "generated": pg.tolist(),
                "reference": pr.tolist(),
                "oa": float(np.minimum(pg, pr).sum()) if width else math.nan,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        metrics = {
            name: {
                "unit": m.unit,
                "description": m.description,
                "generated": _jsonable(self.summary("generated", name)),
                "reference": _jsonable(self.summary("reference", name)),
                "oa": _jsonable(self.oa[name]),
                "intra_inter": _jsonable(self.distances.get(name, {})),
            }
            for name, m in METRICS.items()
        }
        return {
            "generated": self.generated.to_dict(),
            "reference": self.reference.to_dict(),
            "metrics": metrics,
            "pitch_class_histogram": {
                "generated": _jsonable(self.generated.histograms().mean(axis=0).tolist()),
                "reference": _jsonable(self.reference.histograms().mean(axis=0).tolist()),
                "intra_inter": _jsonable(self.distances.get(PCH, {})),
            },
            "mean_oa": _jsonable(self.mean_oa),
            "pooled": _jsonable(self.pooled()),
            "plots": list(self.plots),
        }

    def table(self) -> str:
        def cell(s: dict[str, float]) -> str:
            return "n/a" if not s["n"] else f"{s['mean']:.3f} ± {s['std']:.3f}"

        def num(x: float) -> str:
            return "n/a" if not math.isfinite(x) else f"{x:.3f}"

        head = ["metric", "unit", "generated", "reference", "OA", "OA intra-gen/inter"]
        rows = [
            [
                name,
                m.unit,
                cell(self.summary("generated", name)),
                cell(self.summary("reference", name)),
                num(self.oa[name]),
                num(self.distances.get(name, {}).get("oa_generated", math.nan)),
            ]
            for name, m in METRICS.items()
        ]
        rows.append(["mean OA", "", "", "", num(self.mean_oa), ""])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

        def line(r: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            ).rstrip()

        sets = [
            f"{label}: {s.root} — {len(s.pieces)} pieces, {len(s.skipped)} unreadable skipped"
            for label, s in (("generated", self.generated), ("reference", self.reference))
        ]
        rule = "-" * len(line(head))
        table = [*sets, "", line(head), rule, *map(line, rows[:-1]), rule, line(rows[-1])]
        return "\n".join([*table, "", *self._pooled_lines()])

    def _pooled_lines(self) -> list[str]:
        pooled = self.pooled()
        lengths, poly = pooled["note_length"], pooled["polyphony_share"]

        def summary(s: dict[str, float]) -> str:
            if not s["notes"]:
                return "no notes"
            return (
                f"median {s['median']:.2f}, p95 {s['p95']:.2f}, p99 {s['p99']:.2f}, "
                f"> {LONG_NOTE_BEATS:g} beats {100 * s['over']:.2f} % of {s['notes']:,} notes"
            )

        def share(p: list[float]) -> str:
            return " ".join(f"{k}:{100 * x:.0f}%" for k, x in enumerate(p) if x >= 0.005)

        oa_len, oa_poly = lengths["oa"], poly["oa"]
        return [
            f"note length (beats, all notes; OA {oa_len:.3f}):",
            f"  generated  {summary(lengths['generated'])}",
            f"  reference  {summary(lengths['reference'])}",
            f"notes sounding at once (share of time; OA {oa_poly:.3f}):",
            f"  generated  {share(poly['generated'])}",
            f"  reference  {share(poly['reference'])}",
        ]


def compare_sets(gen: SetMetrics, ref: SetMetrics) -> MetricsReport:
    """Per-metric OA and intra/inter-set distances of a generated set against a reference."""
    return MetricsReport(gen, ref, overlap_areas(gen, ref), set_distances(gen, ref))


def _log_subset(lengths: np.ndarray) -> np.ndarray:
    if lengths.size > MAX_POOLED:  # bounds the KDE's cost; seeded so reports are reproducible
        lengths = np.random.default_rng(0).choice(lengths, MAX_POOLED, replace=False)
    return np.log2(lengths[lengths > 0])


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
