"""Velocity and tempo augmentation, keyboard weighting, and the sampler's stream."""

from __future__ import annotations

import numpy as np
import pytest

from antiphon.errors import UserError
from antiphon.models.augment import TempoStretch, stretch_for, velocity_tables
from antiphon.models.dataset import Augment, TokenSplit, WindowSampler
from antiphon.models.midi.notes import Grid, Note, Performance
from antiphon.models.midi.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.create()


def _piece(seed: int, n: int = 60) -> Performance:
    """Notes of varied lengths, gaps (some longer than 4 beats) and velocities."""
    rng = np.random.default_rng(seed)
    grid = Grid(tpq=8)
    notes, t = [], 0
    for _ in range(n):
        t += int(rng.choice([0, 1, 2, 3, 4, 6, 8, 12, 40]))
        length = int(rng.choice([1, 2, 4, 8, 12]))
        notes.append(Note(t, t + length, int(rng.integers(40, 90)), int(rng.integers(20, 120))))
    return Performance(grid, sorted(notes, key=lambda n: (n.start, n.pitch)), [])


def _kinds(tok: Tokenizer, ids: np.ndarray | list[int]) -> list[str]:
    return [tok.vocab[i] for i in ids]


def test_velocity_moves_every_velocity_by_the_same_bins_and_nothing_else(tok: Tokenizer) -> None:
    ids = np.asarray(tok.encode(_piece(1)), dtype=np.int32)
    levels = sorted(int(t.split("_")[1]) for t in tok.vocab if t.startswith("Velocity_"))
    tables = velocity_tables(tok.vocab, 3)
    assert sorted(tables) == list(range(-3, 4))
    np.testing.assert_array_equal(tables[0][ids], ids)
    for k in (-3, 2):
        out = tables[k][ids]
        for before, after in zip(_kinds(tok, ids), _kinds(tok, out), strict=True):
            if not before.startswith("Velocity_"):
                assert after == before
                continue
            rank = levels.index(int(before.split("_")[1]))
            expected = levels[min(len(levels) - 1, max(0, rank + k))]  # clamped at the ends
            assert after == f"Velocity_{expected}"
    decoded = tok.decode(tables[2][ids].tolist())
    original = tok.decode(ids.tolist())
    assert [(n.start, n.end, n.pitch) for n in decoded.notes] == [
        (n.start, n.end, n.pitch) for n in original.notes
    ]
    assert all(a.velocity >= b.velocity for a, b in zip(decoded.notes, original.notes))
    assert any(a.velocity > b.velocity for a, b in zip(decoded.notes, original.notes))


@pytest.mark.parametrize("factor", [0.8, 1.25, 1.0])
def test_tempo_scales_the_time_between_events_and_keeps_the_events(
    tok: Tokenizer, factor: float
) -> None:
    perf = _piece(2)
    ids = np.asarray(tok.encode(perf), dtype=np.int32)
    stretch = TempoStretch(tok.vocab, tok.grid.tpq)
    out = stretch.apply(ids, factor)

    def events(seq: np.ndarray) -> list[str]:
        return [t for t in _kinds(tok, seq) if not t.startswith("TimeShift_")]

    assert events(out) == events(ids)  # the same notes, velocities, order
    if factor == 1.0:
        np.testing.assert_array_equal(out, ids)

    # Each gap between two events is scaled, to the nearest tick.
    def gaps(seq: np.ndarray) -> list[int]:
        result, run = [], 0
        for t in seq.tolist():
            if stretch.is_shift[t]:
                run += int(stretch.ticks[t])
            else:
                result.append(run)
                run = 0
        return result

    assert gaps(out) == [round(g * factor) for g in gaps(ids)]
    decoded = tok.decode(out.tolist())
    assert [(n.pitch, n.velocity) for n in decoded.notes] == [
        (n.pitch, n.velocity) for n in tok.decode(ids.tolist()).notes
    ]
    original = tok.decode(ids.tolist()).notes
    span = decoded.notes[-1].start / max(1, original[-1].start)
    assert span == pytest.approx(factor, rel=0.05)


def test_tempo_is_refused_for_tokenizers_that_keep_time_elsewhere(tok: Tokenizer) -> None:
    assert stretch_for("MIDILike", tok.vocab, 8, 0.0) is None
    assert isinstance(stretch_for("MIDILike", tok.vocab, 8, 0.2), TempoStretch)
    remi = Tokenizer.create("remi")
    with pytest.raises(UserError, match="MIDI-like"):
        stretch_for(remi.kind, remi.vocab, 8, 0.2)
    with pytest.raises(UserError, match="--tempo"):
        stretch_for("MIDILike", tok.vocab, 8, -0.1)


def _split(pieces: list[list[int]], keyboard: tuple[int, ...] = ()) -> TokenSplit:
    tokens = np.concatenate([np.asarray(p, dtype=np.int32) for p in pieces])
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
    return TokenSplit(tokens, offsets, keyboard)


def test_unweighted_unaugmented_sampler_draws_the_stream_it_always_drew() -> None:
    split = _split([list(range(i, i + 50)) for i in range(0, 400, 50)])
    shifts = {k: np.arange(450, dtype=np.int32) for k in (-1, 0, 1)}
    sampler = WindowSampler(split, 16, 3, shifts)
    rng = np.random.default_rng(3)  # the draws of the sampler before weights existed
    for _ in range(50):
        start = int(rng.integers(0, len(split.tokens) - 17 + 1))
        rng.integers(0, 3)
        np.testing.assert_array_equal(sampler.window(), split.tokens[start : start + 17])


def test_keyboard_weight_makes_its_windows_that_much_likelier() -> None:
    # Piece 2 (tokens 1000-1199) is a keyboard work among 1,000-token pieces.
    pieces = [[0] * 1000, [0] * 1000, [1] * 200, [0] * 1000]
    split = _split(pieces, keyboard=(2,))
    assert split.piece_weights(1.0) is None
    weights = split.piece_weights(5.0)
    np.testing.assert_array_equal(weights, [1, 1, 5, 1])
    sampler = WindowSampler(split, 0, 11, None, weights=weights)  # one-token windows
    draws = np.array([sampler.window()[0] for _ in range(20_000)])
    expected = 5 * 200 / (3 * 1000 + 5 * 200)  # 0.25, against 0.0625 unweighted
    assert (draws == 1).mean() == pytest.approx(expected, abs=0.015)
    with pytest.raises(ValueError, match="weight"):
        WindowSampler(split, 0, 11, None, weights=np.ones(3))


def test_augmented_windows_have_the_block_length_and_ranks_stay_in_step(tok: Tokenizer) -> None:
    pieces = [[tok.bos, *tok.encode(_piece(s)), tok.eos] for s in range(6)]
    split = _split(pieces)
    augment = Augment(
        velocity=velocity_tables(tok.vocab, 2), stretch=TempoStretch(tok.vocab, 8), tempo=0.25
    )
    one = WindowSampler(split, 64, 5, None, augment=augment)
    two = WindowSampler(split, 64, 5, None, augment=augment)
    full = one.batch(8)
    assert full.shape == (8, 65)
    np.testing.assert_array_equal(two.batch(8, range(4, 8)), full[4:])
    plain = WindowSampler(split, 64, 5, None)
    assert not np.array_equal(plain.batch(8), full)  # augmentation did change the windows
