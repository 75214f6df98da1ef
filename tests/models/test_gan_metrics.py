"""C-RNN-GAN's measures on hand-made note lists, with their values worked out by hand."""

from __future__ import annotations

import math

import pytest

from antiphon.models.gan_metrics import (
    measure,
    polyphony,
    repetitions,
    scale_consistency,
    summarize,
    tone_span,
)


def notes(*pitches: int, step: int = 4) -> list[tuple[int, int, int]]:
    return [(i * step, i * step + step, p) for i, p in enumerate(pitches)]


def test_polyphony_counts_notes_sharing_an_onset() -> None:
    assert polyphony(notes(60, 62, 64)) == 0.0
    chord_then_melody = [(0, 8, 60), (0, 8, 64), (0, 8, 67), (8, 12, 72)]
    assert polyphony(chord_then_melody) == pytest.approx(3 / 4)
    assert math.isnan(polyphony([]))


def test_scale_consistency_best_scale() -> None:
    assert scale_consistency(notes(60, 62, 64, 65, 67, 69, 71, 72)) == 1.0  # C major
    # C D E F# : three of four in C major, all four in G major (and E minor)
    assert scale_consistency(notes(60, 62, 64, 66)) == 1.0
    # the chromatic scale: at most 7 of 12 pitch classes in any one scale
    assert scale_consistency(notes(*range(60, 72))) == pytest.approx(7 / 12)


def test_repetitions_of_interval_motifs() -> None:
    motif = [60, 62, 64, 60]  # intervals +2 +2 -4
    assert repetitions(notes(*motif)) == 0
    # the motif, then again a fifth up: +2 +2 -4 | +7 | +2 +2 -4 — the 3-interval sequence
    # (+2, +2, -4) occurs twice, everything else once.
    assert repetitions(notes(*motif, 67, 69, 71, 67)) == 1
    assert repetitions(notes(*([60] * 6))) == 2  # (0, 0, 0) at three places
    assert repetitions(notes(60, 62)) == 0  # too short for one motif


def test_tone_span_and_measure() -> None:
    assert tone_span(notes(55, 79, 60)) == 24.0
    m = measure(notes(60, 64, 67, 72))
    assert m == {"polyphony": 0.0, "scale_consistency": 1.0, "repetitions": 0.0, "tone_span": 12.0}


def test_summarize_mean_and_std_over_samples() -> None:
    s = summarize([notes(60, 72), notes(60, 84), []])  # the empty sample has no span
    assert s["tone_span"].mean == 18.0 and s["tone_span"].std == 6.0
    assert str(s["tone_span"]) == "18.000 ± 6.000"
