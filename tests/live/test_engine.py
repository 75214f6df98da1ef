"""TokenVoice: how a token model hears closed ticks and plays from a start tick."""

from __future__ import annotations

import pytest

from antiphon.live.context import StreamingContext
from antiphon.live.engine import TokenVoice, open_voice
from antiphon.live.sampling import Sampler, Sampling
from antiphon.live.session import ModelFile


def ticks_of(voice, notes):
    ctx = StreamingContext(voice.grid)
    out = []
    for beat, pitch, length in notes:
        out += ctx.note_on(beat, pitch, 80)
        out += ctx.note_off(beat + length, pitch)
    return out + ctx.finish()


def test_long_pauses_are_capped_only_when_asked(tiny_onnx) -> None:
    model = ModelFile.open(tiny_onnx)
    capped, exact = TokenVoice(model, max_gap_beats=4), TokenVoice(model)
    ticks = ticks_of(exact, [(0, 60, 1), (100, 62, 1)])
    shift = exact.codec.shift_of
    for voice, beats in ((exact, 101), (capped, 6)):  # two 1-beat notes 99 beats apart, or 4
        tokens, last = voice.encode(0, ticks)
        assert sum(shift.get(t, 0) for t in tokens) == beats * voice.grid.tpq
        assert last == 101 * voice.grid.tpq


def test_observe_keeps_the_most_recent_window_of_a_long_prompt(tiny_onnx) -> None:
    voice = open_voice(ModelFile.open(tiny_onnx))
    ticks = ticks_of(voice, [(i * 0.25, 60 + i % 12, 0.2) for i in range(200)])
    state = voice.observe(voice.empty(), ticks)
    tokens, _ = voice.encode(0, ticks)
    assert len(tokens) > voice.stepper.max_context
    assert state.model.position == 1 + len(tokens)  # positions count on past the window
    assert 0 < state.model.length <= voice.stepper.max_context


def test_a_plan_starts_with_a_note_at_the_start_tick_and_closes_its_notes(tiny_onnx) -> None:
    voice = open_voice(ModelFile.open(tiny_onnx))
    state = voice.observe(voice.empty(), ticks_of(voice, [(0, 60, 0.5), (0.5, 64, 0.5)]))
    steps = list(
        voice.plan(state, [], start_tick=16, until_tick=48, sampler=Sampler(Sampling(seed=0)))
    )
    events = [e for s in steps for e in s.events]
    assert events[0].kind == "on" and events[0].tick == 16
    sounding = {}
    for e in events:
        if e.kind == "on":
            sounding[e.pitch] = sounding.get(e.pitch, 0) + 1
        elif e.kind == "off":
            sounding[e.pitch] -= 1
    assert not any(sounding.values())
    assert steps[-1].tick >= 48
    assert max(e.tick for e in events) <= 48  # a time shift past the end releases there


def test_a_model_that_never_moves_time_still_ends_its_plan(tiny_onnx) -> None:
    import numpy as np

    voice = open_voice(ModelFile.open(tiny_onnx))
    codec = voice.codec
    # A sampler that always wants another note: without the guard this never ends.
    eager = np.full(codec.size, -1e9)
    eager[list(codec.note_on.values())] = 10.0
    eager[list(codec.velocity.values())] = 5.0

    class Stubborn:
        def __call__(self, logits, allowed=None):
            scores = np.where(allowed, eager, -np.inf) if allowed is not None else eager
            return int(np.argmax(scores))

    state = voice.observe(voice.empty(), ticks_of(voice, [(0, 60, 0.5)]))
    steps = list(voice.plan(state, [], start_tick=8, until_tick=24, sampler=Stubborn()))
    assert steps[-1].tick >= 24


def test_the_note_off_of_a_note_held_past_the_hold_grows_likelier(tiny_onnx) -> None:
    import numpy as np

    from antiphon.live.engine import HOLD_NATS_PER_BEAT

    voice = TokenVoice(ModelFile.open(tiny_onnx))
    codec, tpq = voice.codec, voice.grid.tpq
    dec = codec.decoder(0)
    for name in ("NoteOn_60", "Velocity_63", "TimeShift_1.0.8", "NoteOn_64", "Velocity_63"):
        dec.step(codec.ids[name])
    logits = np.zeros(codec.size, dtype=np.float32)
    hold = 4 * tpq
    dec.tick = hold + tpq // 2  # 60 is held half a beat past the hold
    biased = voice._release_overdue(logits, dec, hold)
    assert biased[codec.note_off[60]] == pytest.approx(HOLD_NATS_PER_BEAT / 2)
    assert np.count_nonzero(biased) == 1 and not logits.any()  # 64 is not overdue yet
    dec.tick += 2 * tpq
    biased = voice._release_overdue(logits, dec, hold)
    assert biased[codec.note_off[64]] == pytest.approx(HOLD_NATS_PER_BEAT * 1.5)
    assert voice._release_overdue(logits, dec, None) is logits


def test_the_hold_follows_the_note_lengths_heard(tiny_onnx) -> None:
    from antiphon.live.engine import HOLD_BEATS, HOLD_MIN_BEATS, HOLD_MIN_NOTES

    voice = TokenVoice(ModelFile.open(tiny_onnx))
    tpq = voice.grid.tpq
    quavers = ticks_of(voice, [(i * 0.5, 60 + i % 5, 0.5) for i in range(40)])
    state = voice.observe(voice.empty(), quavers)
    assert state.lengths == (tpq // 2,) * 40
    assert voice.hold_for(state.lengths) == HOLD_MIN_BEATS * tpq  # 2 x 0.5 beats
    assert voice.hold_for((3 * tpq,) * HOLD_MIN_NOTES) == HOLD_BEATS * tpq  # 6 beats: capped
    assert voice.hold_for((tpq // 4,) * (HOLD_MIN_NOTES - 1)) == HOLD_BEATS * tpq  # too few
    assert voice.hold_for((tpq,) * HOLD_MIN_NOTES) == 2 * tpq
    assert TokenVoice(voice.model, hold_beats=None).hold_for(state.lengths) is None
