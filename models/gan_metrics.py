"""C-RNN-GAN's four measures of a sample (Mogren 2016, section 4), one number each:

- ``polyphony``: how often two tones are played at once — the fraction of notes whose onset
  is exactly another note's onset (0 for a melody, 1 for block chords);
- ``scale_consistency``: the fraction of notes inside the best-matching standard scale (the
  24 major and natural-minor scales of ``models.metrics``);
- ``repetitions``: recurrence of short subsequences — every occurrence of a sequence of
  ``REPEAT_NOTES`` consecutive pitch intervals after its first (transposition-invariant, so a
  motif moved up a third counts), summed over the sample; samples of equal length compare;
- ``tone_span``: semitones between the lowest and the highest tone.

Notes are (start tick, end tick, pitch); the measures ignore lengths except through onsets.
Only numpy: ``antiphon eval --gan`` measures generated samples and the training data alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from antiphon.models.metrics import _SCALES

REPEAT_NOTES = 3  # intervals per repeated subsequence (a four-note motif)
MEASURES = ("polyphony", "scale_consistency", "repetitions", "tone_span")


def polyphony(notes: Sequence[tuple[int, int, int]]) -> float:
    if not notes:
        return float("nan")
    onsets = Counter(n[0] for n in notes)
    return sum(c for c in onsets.values() if c > 1) / len(notes)


def scale_consistency(notes: Sequence[tuple[int, int, int]]) -> float:
    if not notes:
        return float("nan")
    hist = np.bincount([n[2] % 12 for n in notes], minlength=12).astype(np.float64)
    return float((_SCALES @ hist).max() / hist.sum())


def repetitions(notes: Sequence[tuple[int, int, int]], length: int = REPEAT_NOTES) -> int:
    """Occurrences of interval sequences of ``length`` beyond their first, the notes taken in
    (start, pitch) order."""
    pitches = [n[2] for n in sorted(notes, key=lambda n: (n[0], n[2]))]
    intervals = np.diff(pitches)
    grams = Counter(tuple(intervals[i : i + length]) for i in range(len(intervals) - length + 1))
    return sum(c - 1 for c in grams.values())


def tone_span(notes: Sequence[tuple[int, int, int]]) -> float:
    if not notes:
        return float("nan")
    pitches = [n[2] for n in notes]
    return float(max(pitches) - min(pitches))


def measure(notes: Sequence[tuple[int, int, int]]) -> dict[str, float]:
    return {
        "polyphony": polyphony(notes),
        "scale_consistency": scale_consistency(notes),
        "repetitions": float(repetitions(notes)),
        "tone_span": tone_span(notes),
    }


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}" if np.isfinite(self.mean) else "n/a"


def summarize(samples: Sequence[Sequence[tuple[int, int, int]]]) -> dict[str, Summary]:
    """Each measure's mean and standard deviation over samples (NaNs left out)."""
    values = [measure(s) for s in samples]
    out = {}
    for name in MEASURES:
        v = np.asarray([x[name] for x in values], dtype=np.float64)
        v = v[np.isfinite(v)]
        out[name] = Summary(float(v.mean()), float(v.std())) if v.size else Summary(np.nan, np.nan)
    return out
