"""Objective music metrics of single pieces (Yang & Lerch 2019; Wu & Yang 2020).

A piece is read with ``notes.read_performance`` on a 24-ticks-per-quarter grid over the full
MIDI pitch range: the canonical reading the models see (tracks merged, drums skipped, sustain
pedal not lengthening notes, tempo ignored), fine enough for triplets and sixteenths. Time is
in beats (quarter notes), not seconds: models and tokenizers ignore tempo, and generated files
often carry a default tempo, so seconds would compare the files' tempo metadata rather than
the music. Bars follow the file's time signatures (4/4 where none is given; a change that falls
inside a bar starts a new bar, as MIDI defines), from tick 0 to the end of the last note.

The metrics, one number per piece (``METRICS``; NaN where undefined):

- ``pitch_class_entropy`` (bits, log2): Shannon entropy of the pitch-class histogram, each note
  counted once; 0 for one pitch class, log2(12) = 3.585 for all twelve equally.
- ``pitch_range`` (semitones): highest minus lowest pitch.
- ``pitch_count``: distinct MIDI pitches ("pitch diversity" in the original projects).
- ``polyphony`` (notes): mean number of notes sounding, over the time where any sounds.
- ``note_density`` (notes/bar): notes (onsets) divided by the number of bars.
- ``ioi_mean``, ``ioi_std`` (beats): mean and population standard deviation of the intervals
  between successive distinct onset times (a chord is one onset); need two onsets.
- ``groove_consistency`` (0..1, Wu & Yang 2020; "rhythmic consistency" in the original
  projects): 1 - the mean, over adjacent bars, of the Hamming distance between their binary
  onset-position vectors divided by the vector length (ticks per bar); needs two bars.
- ``scale_consistency`` (0..1): the largest fraction of notes inside one of the 24 major and
  natural-minor scales.
- ``empty_bar_rate`` (0..1): the fraction of bars in which no note sounds (a note held across
  a bar line keeps the bar non-empty).

The pitch-class histogram (12 fractions, C first) is kept per piece for plots and for the
intra/inter-set distances of ``overlap.py``. ``compare_dirs`` is the ``antiphon eval
--generated/--reference`` entry point.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from antiphon.errors import UserError
from antiphon.models.midi.notes import Grid, MidiFileError, Note, read_performance

if TYPE_CHECKING:
    from antiphon.models.overlap import MetricsReport

TPQ = 24  # ticks per quarter note: exact for triplets, sixteenths and x/32 time signatures


def metric_grid(tpq: int = TPQ) -> Grid:
    # The full MIDI range: the metrics describe the files, not what a tokenizer could encode.
    return Grid(tpq=tpq, pitch_lo=0, pitch_hi=127)


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("pitch_class_entropy", "bits", "entropy of the pitch-class histogram"),
        Metric("pitch_range", "semitones", "highest minus lowest pitch"),
        Metric("pitch_count", "pitches", "distinct pitches (pitch diversity)"),
        Metric("polyphony", "notes", "mean notes sounding when any sounds"),
        Metric("note_density", "notes/bar", "note onsets per bar"),
        Metric("ioi_mean", "beats", "mean interval between successive onsets"),
        Metric("ioi_std", "beats", "std of the intervals between successive onsets"),
        Metric("groove_consistency", "0..1", "1 - mean Hamming distance of adjacent bars"),
        Metric("scale_consistency", "0..1", "best fraction of notes in a major/minor scale"),
        Metric("empty_bar_rate", "0..1", "fraction of bars where nothing sounds"),
    )
}

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor
_SCALES = np.array(
    [
        [(pc - root) % 12 in steps for pc in range(12)]
        for steps in (MAJOR_SCALE, MINOR_SCALE)
        for root in range(12)
    ],
    dtype=float,
)  # (24, 12): 1 where a pitch class is in the scale


@dataclass(frozen=True)
class Bar:
    start: int  # ticks
    end: int  # ticks, exclusive


@dataclass(frozen=True)
class PieceMetrics:
    path: str
    values: dict[str, float]  # METRICS names -> value, NaN where undefined
    pitch_class_histogram: tuple[float, ...]  # 12 fractions summing to 1, C first
    notes: int
    bars: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "values": {k: _json_float(v) for k, v in self.values.items()},
            "pitch_class_histogram": list(self.pitch_class_histogram),
            "notes": self.notes,
            "bars": self.bars,
        }


@dataclass
class SetMetrics:
    """The pieces of one folder that could be read, and the files that could not."""

    root: str
    pieces: list[PieceMetrics]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def values(self, name: str) -> np.ndarray:
        """The finite values of one metric over the pieces (undefined ones left out)."""
        v = np.array([p.values[name] for p in self.pieces], dtype=float)
        return v[np.isfinite(v)]

    def histograms(self) -> np.ndarray:
        return np.array([p.pitch_class_histogram for p in self.pieces], dtype=float)  # (N, 12)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dir": self.root,
            "pieces": len(self.pieces),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "values": [p.to_dict() for p in self.pieces],
        }


# -- bars --------------------------------------------------------------------------------
def bars_of(signatures: Sequence[tuple[int, int, int]], end: int, tpq: int = TPQ) -> list[Bar]:
    """The bars covering ticks [0, end) under time signatures (tick, numerator, denominator).

    A signature at the same tick as an earlier one replaces it; 4/4 holds until the first.
    """
    by_tick: dict[int, int] = {0: 4 * tpq}
    for tick, num, den in sorted(signatures, key=lambda s: s[0]):
        if num < 1 or den < 1:  # corrupt: ignore rather than make one-tick bars
            continue
        by_tick[max(0, tick)] = max(1, round(num * 4 * tpq / den))
    changes = sorted(by_tick.items())
    bars: list[Bar] = []
    for i, (tick, length) in enumerate(changes):
        stop = changes[i + 1][0] if i + 1 < len(changes) else math.inf
        t = tick
        while t < stop and t < end:
            bars.append(Bar(t, int(min(t + length, stop))))
            t += length
        if t >= end:
            break
    return bars


def read_time_signatures(path: Path, tpq: int = TPQ) -> list[tuple[int, int, int]]:
    """(tick on the metric grid, numerator, denominator) of every time signature in a file."""
    import mido

    mid = mido.MidiFile(path, clip=True)
    tpb = mid.ticks_per_beat or 480
    grid = metric_grid(tpq)
    out: list[tuple[int, int, int]] = []
    for track in mid.tracks:
        t = 0
        for msg in track:
            t += msg.time
            if msg.type == "time_signature":
                out.append((grid.tick(t / tpb), msg.numerator, msg.denominator))
    return sorted(out, key=lambda s: s[0])  # stable: a later track's signature wins a tie


# -- metrics -----------------------------------------------------------------------------
def piece_metrics(
    notes: Sequence[Note], bars: Sequence[Bar], tpq: int = TPQ, path: str = ""
) -> PieceMetrics:
    """Every metric of one piece from its canonical notes (ticks) and bars."""
    if not notes:
        raise ValueError("a piece needs at least one note")
    starts = np.array([n.start for n in notes], dtype=np.int64)
    ends = np.array([n.end if n.end is not None else n.start + 1 for n in notes], dtype=np.int64)
    pitches = np.array([n.pitch for n in notes], dtype=np.int64)

    pch = np.bincount(pitches % 12, minlength=12).astype(float)
    pch /= pch.sum()
    nz = pch[pch > 0]
    entropy = float(-(nz * np.log2(nz)).sum()) + 0.0  # + 0.0: -0.0 for one pitch class

    seg_start, seg_end, count = sounding(starts, ends)
    heard = count > 0
    span = (seg_end - seg_start)[heard]
    polyphony = float((count[heard] * span).sum() / span.sum())

    onsets = np.unique(starts)
    ioi = np.diff(onsets) / tpq
    ioi_mean = float(ioi.mean()) if ioi.size else math.nan
    ioi_std = float(ioi.std()) if ioi.size else math.nan

    in_scale = _SCALES @ np.bincount(pitches % 12, minlength=12)  # (24,) notes in each scale

    values = {
        "pitch_class_entropy": entropy,
        "pitch_range": float(pitches.max() - pitches.min()),
        "pitch_count": float(np.unique(pitches).size),
        "polyphony": polyphony,
        "note_density": len(notes) / len(bars) if bars else math.nan,
        "ioi_mean": ioi_mean,
        "ioi_std": ioi_std,
        "groove_consistency": groove_consistency(onsets, bars),
        "scale_consistency": float(in_scale.max() / len(notes)),
        "empty_bar_rate": empty_bar_rate(seg_start[heard], seg_end[heard], bars),
    }
    assert values.keys() == METRICS.keys()
    return PieceMetrics(path, values, tuple(float(x) for x in pch), len(notes), len(bars))


def groove_consistency(onsets: np.ndarray, bars: Sequence[Bar]) -> float:
    """1 - mean normalized Hamming distance between adjacent bars' onset vectors (Wu & Yang).

    Bars of different lengths (a time-signature change) are compared over the longer one,
    the shorter padded with no onsets.
    """
    if len(bars) < 2:
        return math.nan
    width = max(b.end - b.start for b in bars)
    bar_starts = np.array([b.start for b in bars])
    idx = np.searchsorted(bar_starts, onsets, side="right") - 1
    hits = set(zip(idx.tolist(), (onsets - bar_starts[idx]).tolist()))  # (bar, position)
    # The Hamming distances summed over adjacent pairs: an onset counts once for each
    # neighbouring bar without an onset at its position (sparse: bars can be many).
    last = len(bars) - 1
    differ = sum(
        (b > 0 and (b - 1, p) not in hits) + (b < last and (b + 1, p) not in hits) for b, p in hits
    )
    return float(1.0 - differ / (width * last))


def sounding(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, notes sounding) of the segments between successive note starts/ends.

    Segments, not a tick-by-tick roll: a corrupt file with a note hours long costs nothing.
    """
    t = np.unique(np.concatenate([starts, ends]))  # every time the count can change
    count = np.searchsorted(np.sort(starts), t[:-1], side="right") - np.searchsorted(
        np.sort(ends), t[:-1], side="right"
    )
    return t[:-1], t[1:], count


def empty_bar_rate(heard_start: np.ndarray, heard_end: np.ndarray, bars: Sequence[Bar]) -> float:
    """The fraction of bars that no segment where something sounds overlaps."""
    if not bars:
        return math.nan
    bar_starts = np.array([b.start for b in bars])  # bars are contiguous from tick 0
    first = np.searchsorted(bar_starts, heard_start, side="right") - 1
    last = np.searchsorted(bar_starts, heard_end - 1, side="right") - 1
    mark = np.zeros(len(bars) + 1, dtype=np.int64)  # +1 where coverage starts, -1 after it
    np.add.at(mark, first, 1)
    np.add.at(mark, last + 1, -1)
    covered = np.cumsum(mark)[:-1] > 0
    return float(1.0 - covered.mean())


def measure_file(path: str | Path, tpq: int = TPQ) -> PieceMetrics:
    """The metrics of one MIDI file; raises ``MidiFileError`` if it cannot be read."""
    path = Path(path)
    perf = read_performance(path, metric_grid(tpq))
    end = max(n.end if n.end is not None else n.start + 1 for n in perf.notes)
    bars = bars_of(read_time_signatures(path, tpq), end, tpq)
    return piece_metrics(perf.notes, bars, tpq, str(path))


# -- folders -----------------------------------------------------------------------------
def midi_files(folder: Path) -> list[Path]:
    """The .mid/.midi files under a folder (recursively, hidden ones skipped), sorted."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder}: no such directory; pass a folder of .mid/.midi files")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [
            Path(dirpath) / f
            for f in filenames
            if not f.startswith(".") and f.lower().endswith((".mid", ".midi"))
        ]
    if not found:
        raise UserError(f"{folder}: no .mid or .midi files in it (subfolders are searched)")
    return sorted(found)


# mido raises these on corrupt files; read_performance turns most into MidiFileError already.
_READ_ERRORS = (MidiFileError, OSError, EOFError, ValueError, KeyError, IndexError, TypeError)


def measure_files(files: Iterable[Path], root: str = "", tpq: int = TPQ) -> SetMetrics:
    """The metrics of every readable file; unreadable or note-less files are skipped."""
    out = SetMetrics(root, [])
    for f in files:
        try:
            out.pieces.append(measure_file(f, tpq))
        except _READ_ERRORS as exc:
            out.skipped.append((str(f), str(exc) or type(exc).__name__))
    return out


def measure_dir(folder: str | Path, tpq: int = TPQ) -> SetMetrics:
    """The metrics of the MIDI files under a folder; a ``UserError`` if none can be read."""
    folder = Path(folder)
    result = measure_files(midi_files(folder), str(folder), tpq)
    if not result.pieces:
        first = result.skipped[0][1]
        raise UserError(
            f"{folder}: none of its {len(result.skipped)} MIDI files could be read (first: {first})"
        )
    return result


def compare_dirs(generated: Path, reference: Path, plots: Path | None = None) -> MetricsReport:
    """``antiphon eval --generated DIR --reference DIR [--plots DIR]``: metrics, OA, plots."""
    from antiphon.models.overlap import compare_sets

    gen = measure_dir(generated)
    ref = measure_dir(reference)
    report = compare_sets(gen, ref)
    if plots is not None:
        from antiphon.models.plots import write_plots

        report.plots = [str(p) for p in write_plots(report, Path(plots))]
    return report


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
