"""PNG plots of a ``MetricsReport``: metric distributions, pitch classes, note lengths,
notes sounding at once, piano rolls.

matplotlib is imported only here, inside the functions, and drives the Agg canvas directly
(``Figure`` + ``FigureCanvasAgg``, no pyplot): no display is needed, no global figure state is
touched, and importing the metrics never costs matplotlib's start-up time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from antiphon.atomic import atomic_file
from antiphon.errors import UserError
from antiphon.models.metrics import LONG_NOTE_BEATS, METRICS, SetMetrics, metric_grid
from antiphon.models.midi.notes import read_performance

if TYPE_CHECKING:
    from antiphon.models.overlap import MetricsReport

GEN_COLOR, REF_COLOR = "tab:orange", "tab:blue"
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
ROLL_SAMPLES = 4  # pieces per piano-roll figure
ROLL_BEATS = 64  # beats shown per piano roll: 16 bars of 4/4 stay readable


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(
            "antiphon eval --plots needs matplotlib: pip install 'antiphon[eval]'"
        ) from None
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    with atomic_file(path, what="plot") as f:
        fig.savefig(f, format="png")
    return path


def plot_metric(report: MetricsReport, name: str, path: Path) -> Path:
    """Both sets' KDE curves of one metric, their values as rugs, the OA in the title."""
    from antiphon.models.overlap import densities

    fig = _figure(6, 3.5)
    ax = fig.add_subplot()
    gen, ref = report.generated.values(name), report.reference.values(name)
    sets = ((gen, GEN_COLOR, "generated"), (ref, REF_COLOR, "reference"))
    present = [s for s in sets if s[0].size]  # a metric may be undefined for a whole set
    curves = densities(present[0][0], present[-1][0]) if present else None
    if curves is not None:
        x, *ps = curves
        for (v, c, label), p in zip(present, ps):
            ax.plot(x, p, color=c, label=f"{label} (n={v.size})")
        if len(present) == 2:
            ax.fill_between(x, np.minimum(*ps), color="gray", alpha=0.3, label="overlap")
    else:  # constant sets: the values themselves
        for v, c, label in present:
            ax.axvline(v[0], color=c, label=f"{label} (all {v[0]:.3g})")
    # Each piece's value as a rug tick, in a band below zero density.
    top = ax.get_ylim()[1]
    ax.set_ylim(-0.14 * top, top)
    for v, c, y in ((gen, GEN_COLOR, 0.09), (ref, REF_COLOR, 0.04)):
        ax.plot(v, np.full(v.size, y), "|", color=c, transform=ax.get_xaxis_transform())
    oa = report.oa[name]
    oa_text = f"{oa:.3f}" if math.isfinite(oa) else "n/a"
    ax.set_title(f"{name} — OA {oa_text}")
    ax.set_xlabel(f"{METRICS[name].description} ({METRICS[name].unit})")
    ax.set_ylabel("density")
    if present:
        ax.legend(fontsize="small", loc="upper right")
    else:
        ax.text(0.5, 0.5, "undefined for every piece", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_pitch_classes(report: MetricsReport, path: Path) -> Path:
    """The mean pitch-class histogram of each set, side by side."""
    fig = _figure(7, 3.5)
    ax = fig.add_subplot()
    x = np.arange(12)
    for offset, s, c, label in (
        (-0.2, report.generated, GEN_COLOR, "generated"),
        (0.2, report.reference, REF_COLOR, "reference"),
    ):
        h = s.histograms()  # (N, 12)
        mean, std = h.mean(axis=0), h.std(axis=0)
        # Error bars stop at zero: a fraction of notes is never negative.
        ax.bar(
            x + offset,
            mean,
            width=0.4,
            yerr=[np.minimum(std, mean), std],
            color=c,
            label=f"{label} (n={len(h)})",
            capsize=2,
        )
    ax.set_xticks(x, PITCH_CLASSES)
    ax.set_ylabel("fraction of notes")
    ax.set_title("pitch-class histogram (mean ± std over pieces)")
    ax.legend(fontsize="small", loc="upper right")
    return _save(fig, path)


def plot_note_lengths(report: MetricsReport, path: Path) -> Path:
    """Both sets' note lengths, all notes pooled: histograms on a log scale of beats."""
    fig = _figure(7, 3.5)
    ax = fig.add_subplot()
    sets = ((report.generated, GEN_COLOR, "generated"), (report.reference, REF_COLOR, "reference"))
    lengths = [s.note_lengths() for s, _, _ in sets]
    hi = max([LONG_NOTE_BEATS * 2, *(float(x.max()) for x in lengths if x.size)])
    bins = np.geomspace(1 / 32, hi * 1.01, 40)
    for x, (_, c, label) in zip(lengths, sets):
        if x.size:
            weights = np.full(x.size, 100 / x.size)
            ax.hist(x, bins=bins, weights=weights, histtype="step", color=c, label=label)
    ax.axvline(LONG_NOTE_BEATS, color="gray", linestyle="--", label=f"{LONG_NOTE_BEATS:g} beats")
    ax.set_xscale("log", base=2)
    oa = report.pooled()["note_length"]["oa"]
    ax.set_title(f"note length, all notes — OA {oa:.3f}" if math.isfinite(oa) else "note length")
    ax.set_xlabel("beats")
    ax.set_ylabel("% of notes")
    ax.legend(fontsize="small", loc="upper right")
    return _save(fig, path)


def plot_polyphony(report: MetricsReport, path: Path) -> Path:
    """Notes sounding at once: the share of time at each count (both sets), and over time
    in the first sampled piece of each set."""
    from antiphon.models.metrics import sounding

    fig = _figure(10, 3.5)
    share, curve = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    pooled = report.pooled()["polyphony_share"]
    for offset, key, c in ((-0.2, "generated", GEN_COLOR), (0.2, "reference", REF_COLOR)):
        p = np.asarray(pooled[key])
        share.bar(np.arange(p.size) + offset, 100 * p, width=0.4, color=c, label=key)
    share.set_xlabel("notes sounding at once")
    share.set_ylabel("% of time")
    share.set_title(f"notes sounding at once — OA {pooled['oa']:.3f}")
    share.legend(fontsize="small", loc="upper right")
    grid = metric_grid()
    for s, c, label in (
        (report.generated, GEN_COLOR, "generated"),
        (report.reference, REF_COLOR, "reference"),
    ):
        if not s.pieces:
            continue
        notes = read_performance(s.pieces[0].path, grid).notes
        starts = np.array([n.start for n in notes])
        ends = np.array([n.end or n.start + 1 for n in notes])
        t0, _, count = sounding(starts, ends)
        keep = t0 < ROLL_BEATS * grid.tpq
        curve.step(t0[keep] / grid.tpq, count[keep], where="post", color=c, label=label)
    curve.set_xlabel("beats (first sampled piece of each set)")
    curve.set_ylabel("notes sounding")
    curve.set_title("notes sounding at once over time")
    curve.legend(fontsize="small", loc="upper right")
    return _save(fig, path)


def sample_indices(count: int, k: int = ROLL_SAMPLES) -> list[int]:
    """``k`` pieces spread evenly through a sorted set, so samples are reproducible."""
    if count <= k:
        return list(range(count))
    return sorted({round(i * (count - 1) / (k - 1)) for i in range(k)})


def plot_piano_rolls(pieces: SetMetrics, label: str, path: Path) -> Path:
    """Piano rolls (pitch over beats) of a few pieces of a set, the first ROLL_BEATS beats."""
    picks = [pieces.pieces[i] for i in sample_indices(len(pieces.pieces))]
    fig = _figure(10, 2.2 * max(1, len(picks)))
    from matplotlib.collections import PolyCollection

    grid = metric_grid()
    color = GEN_COLOR if label == "generated" else REF_COLOR
    for row, piece in enumerate(picks):
        ax = fig.add_subplot(len(picks), 1, row + 1)
        notes = read_performance(piece.path, grid).notes
        # One collection of rectangles: an artist per note would cost seconds per figure.
        boxes = []
        for n in notes:
            start = n.start / grid.tpq
            if start < ROLL_BEATS:
                end = min((n.end or n.start + 1) / grid.tpq, ROLL_BEATS)
                lo, hi = n.pitch - 0.4, n.pitch + 0.4
                boxes.append([(start, lo), (end, lo), (end, hi), (start, hi)])
        ax.add_collection(PolyCollection(boxes, facecolors=color, edgecolors="none"))
        shown = min(ROLL_BEATS, max((n.end or n.start + 1) for n in notes) / grid.tpq)
        ax.set_xlim(0, math.ceil(shown))
        pitches = [n.pitch for n in notes]
        ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
        ax.set_xticks(range(0, math.ceil(shown) + 1, 4))
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(f"{label}: {Path(piece.path).name}", fontsize="small", loc="left")
        ax.set_ylabel("pitch")
    fig.axes[-1].set_xlabel("beats")
    return _save(fig, path)


def write_plots(report: MetricsReport, folder: Path) -> list[Path]:
    """Every plot of a report as PNG files in ``folder`` (created); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [plot_metric(report, name, folder / f"metric-{name}.png") for name in METRICS]
    paths.append(plot_pitch_classes(report, folder / "pitch-classes.png"))
    paths.append(plot_note_lengths(report, folder / "note-lengths.png"))
    paths.append(plot_polyphony(report, folder / "polyphony.png"))
    for label, s in (("generated", report.generated), ("reference", report.reference)):
        paths.append(plot_piano_rolls(s, label, folder / f"pianoroll-{label}.png"))
    return paths
