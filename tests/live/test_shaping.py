from __future__ import annotations

import itertools
import json
import random

import pytest

from antiphon.errors import UserError
from antiphon.live.ports import MemoryOutput
from antiphon.live.scheduler import Scheduler, note_kind
from antiphon.live.shaping import (
    MIN_NOTE_SECONDS,
    NoteEvent,
    Shaping,
    fold_pitch,
    notes_to_events,
    shape,
)


def max_polyphony(notes: list[NoteEvent]) -> int:
    edges = sorted([(n.start, 1) for n in notes] + [(n.end, -1) for n in notes])
    # At equal times ends sort first (-1 < 1): a note ending where one starts frees its slot.
    depth = best = 0
    for _, step in edges:
        depth += step
        best = max(best, depth)
    return best


def test_shaping_round_trips_through_json() -> None:
    s = Shaping(transpose=-12, velocity_scale=0.8, lowest=36, highest=96, polyphony=4)
    assert Shaping.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert Shaping.from_dict({}) == Shaping()


def test_shaping_rejects_bad_options() -> None:
    with pytest.raises(UserError, match="unknown"):
        Shaping.from_dict({"transpos": 2})
    with pytest.raises(UserError):
        Shaping(lowest=80, highest=60)
    with pytest.raises(UserError):
        Shaping(polyphony=0)
    with pytest.raises(UserError):
        Shaping(max_note_seconds=0)


def test_identity_shaping_keeps_notes() -> None:
    notes = [NoteEvent(0.0, 0.5, 60, 90), NoteEvent(0.25, 1.0, 64, 70)]
    assert shape(notes, Shaping()) == notes


def test_transpose_and_fold_into_range_by_octaves() -> None:
    s = Shaping(transpose=5, lowest=48, highest=72)
    out = shape([NoteEvent(0, 1, 70, 80), NoteEvent(1, 2, 30, 80)], s)
    # 75 folds down to 63; 35 folds up to 59: pitch classes survive.
    assert [n.pitch for n in out] == [63, 59]
    assert fold_pitch(130, 0, 127) == 118
    assert fold_pitch(61, 60, 64) == 61
    assert fold_pitch(66, 60, 64) == 60  # narrower than an octave: clamped


def test_velocity_scale_is_clamped() -> None:
    notes = [NoteEvent(0, 1, 60, 100), NoteEvent(1, 2, 62, 3)]
    assert [n.velocity for n in shape(notes, Shaping(velocity_scale=2.0))] == [127, 6]
    assert [n.velocity for n in shape(notes, Shaping(velocity_scale=0.0))] == [1, 1]


def test_max_note_seconds_caps_durations() -> None:
    out = shape([NoteEvent(1.0, 9.0, 60, 80)], Shaping(max_note_seconds=2.0))
    assert out == [NoteEvent(1.0, 3.0, 60, 80)]


def test_same_pitch_overlaps_are_resolved() -> None:
    notes = [NoteEvent(0.0, 2.0, 60, 80), NoteEvent(1.0, 3.0, 60, 90), NoteEvent(1.0, 1.5, 60, 100)]
    out = shape(notes, Shaping())
    assert out == [NoteEvent(0.0, 1.0, 60, 80), NoteEvent(1.0, 3.0, 60, 100)]


def test_polyphony_drops_notes_beyond_the_cap() -> None:
    chord = [NoteEvent(0.0, 1.0, p, v) for p, v in [(60, 50), (64, 90), (67, 90), (72, 70)]]
    late = [NoteEvent(0.5, 1.5, 74, 127), NoteEvent(1.0, 2.0, 76, 60)]
    out = shape(chord + late, Shaping(polyphony=3))
    # The loudest three of the chord win; 74 would be a fourth voice; 76 starts as they end.
    assert [n.pitch for n in out] == [64, 67, 72, 76]


def test_zero_length_notes_are_lengthened() -> None:
    out = shape([NoteEvent(1.0, 1.0, 60, 80)], Shaping())
    assert out[0].end == pytest.approx(1.0 + MIN_NOTE_SECONDS)


def test_notes_to_events_puts_note_off_first_when_times_coincide() -> None:
    notes = [NoteEvent(0.0, 0.5, 60, 80), NoteEvent(0.5, 1.0, 60, 90)]
    events = notes_to_events(notes, t0=10.0, channel=2)
    assert [(e.time, e.data) for e in events] == [
        (10.0, (0x92, 60, 80)),
        (10.5, (0x82, 60, 0)),
        (10.5, (0x92, 60, 90)),
        (11.0, (0x82, 60, 0)),
    ]
    with pytest.raises(ValueError):
        notes_to_events(notes, 0.0, channel=16)


def random_notes(rng: random.Random, n: int) -> list[NoteEvent]:
    notes = []
    for _ in range(n):
        start = rng.uniform(0, 4)
        notes.append(
            NoteEvent(
                start=start,
                end=start + rng.choice([0.0, rng.uniform(0, 3)]),
                pitch=rng.randint(-20, 150),
                velocity=rng.randint(0, 127),
            )
        )
    return notes


@pytest.mark.parametrize("seed", range(30))
def test_invariants_hold_for_random_material(seed: int) -> None:
    rng = random.Random(seed)
    s = Shaping(
        transpose=rng.randint(-24, 24),
        velocity_scale=rng.uniform(0, 3),
        lowest=(low := rng.randint(0, 100)),
        highest=rng.randint(low, 127),
        max_note_seconds=rng.choice([None, rng.uniform(0.01, 2)]),
        polyphony=rng.choice([None, rng.randint(1, 8)]),
    )
    out = shape(random_notes(rng, rng.randint(0, 60)), s)
    for n in out:
        assert s.lowest <= n.pitch <= s.highest
        assert 1 <= n.velocity <= 127
        assert n.end > n.start
        if s.max_note_seconds is not None:
            assert n.end - n.start <= max(s.max_note_seconds, MIN_NOTE_SECONDS) + 1e-9
    if s.polyphony is not None:
        assert max_polyphony(out) <= s.polyphony
    by_pitch: dict[int, list[NoteEvent]] = {}
    for n in out:
        by_pitch.setdefault(n.pitch, []).append(n)
    for same in by_pitch.values():
        for a, b in itertools.pairwise(same):
            assert a.end <= b.start

    # Every note-on gets its note-off, and the scheduler plays them without a re-trigger.
    events = notes_to_events(out, t0=100.0, channel=seed % 16)
    ons = [e for e in events if note_kind(e.data)[0] == "on"]
    offs = [e for e in events if note_kind(e.data)[0] == "off"]
    assert len(ons) == len(offs) == len(out)
    t = [0.0]
    sched = Scheduler(MemoryOutput(now=lambda: t[0]), lambda: t[0], None)
    sched.schedule(events)
    nxt = sched.pump(t[0])
    while nxt is not None:
        t[0] = nxt
        nxt = sched.pump(t[0])
    assert sched.sounding() == []
    assert sched.stats()["retriggered"] == 0
    assert sched.stats()["sent"] == 2 * len(out)


def test_tempo_scale_and_number_of_notes() -> None:
    notes = [NoteEvent(float(i), i + 0.5, 60 + i, 80) for i in range(6)]
    fast = shape(notes, Shaping(tempo_scale=2.0))
    assert [(n.start, n.end) for n in fast[:2]] == [(0.0, 0.25), (0.5, 0.75)]
    assert [n.pitch for n in shape(notes, Shaping(max_notes=3))] == [60, 61, 62]
    with pytest.raises(UserError):
        Shaping(tempo_scale=0)
    with pytest.raises(UserError):
        Shaping(max_notes=0)
