"""The piano-roll voice: hears ticks as frames, plays frames as balanced notes, with ORT."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from antiphon.live.engine import open_voice
from antiphon.live.frames_voice import FrameVoice
from antiphon.live.sampling import Sampler, Sampling
from antiphon.live.session import ModelFile
from antiphon.models.midi.notes import file_ticks
from antiphon.models.midi.polyphonic import file_roll
from tests.export.test_polyeval import export_tiny


@pytest.fixture(scope="module", params=["sigmoid", "nade"])
def voice(request, tmp_path_factory) -> FrameVoice:
    path, _ = export_tiny(tmp_path_factory.mktemp("voice"), "gru", request.param, seed=4)
    v = open_voice(ModelFile.open(path))
    assert isinstance(v, FrameVoice)
    return v


def test_hearing_a_file_is_feeding_its_frames(voice, chorale) -> None:
    ticks = file_ticks(chorale, voice.grid)
    heard = voice.empty()
    for i in range(0, len(ticks), 7):  # in pieces, as the daemon hears it
        heard = voice.observe(heard, ticks[i : i + 7])
    roll = file_roll(chorale, voice.grid, voice.frame_ticks)
    still_open = len(heard.cursor.finish())  # a last frame the file's end left open
    fed = voice.stepper.feed(voice.stepper.empty(), roll[: len(roll) - still_open])
    for name, array in fed.items():
        np.testing.assert_allclose(heard.arrays[name], array, atol=1e-5)


def _notes(steps) -> tuple[list, int]:  # type: ignore[no-untyped-def]
    events = [e for s in steps for e in s.events]
    return events, sum(e.kind == "on" for e in events)


def test_plan_plays_balanced_notes_on_the_frame_grid(voice, chorale) -> None:
    heard = voice.observe(voice.empty(), file_ticks(chorale, voice.grid))
    start, until = 1001, 1001 + 64
    plan = voice.plan(
        heard, [], start_tick=start, until_tick=until, sampler=Sampler(Sampling(seed=3))
    )
    assert iter(plan) is plan  # a generator: the daemon schedules while it samples
    steps = list(plan)
    events, ons = _notes(steps)
    assert ons > 0 and events[0].kind == "on"  # note_first: it starts at once
    assert events[0].tick == 1002  # the first frame boundary at or after the start
    assert all(
        start <= e.tick <= until and e.tick % voice.frame_ticks in (0, until % 2) for e in events
    )
    sounding: dict[int, int] = {}
    for e in events:
        sounding[e.pitch] = sounding.get(e.pitch, 0) + (1 if e.kind == "on" else -1)
        assert sounding[e.pitch] in (0, 1)
    assert not any(sounding.values())  # every note closed, the last ones at until_tick
    assert {e.velocity for e in events if e.kind == "on"} <= set(voice.grid.velocities)
    assert steps[-1].tick == until


def test_same_seed_same_answer_and_the_state_is_a_value(voice, chorale) -> None:
    heard = voice.observe(voice.empty(), file_ticks(chorale, voice.grid))
    before = {k: v.copy() for k, v in heard.arrays.items()}

    def answer(seed: int) -> list:
        plan = voice.plan(
            heard, [], start_tick=2000, until_tick=2048, sampler=Sampler(Sampling(seed=seed))
        )
        return [e for s in plan for e in s.events]

    assert answer(5) == answer(5)
    assert all(np.array_equal(before[k], heard.arrays[k]) for k in before)


def test_greedy_and_silent_histories_still_start_with_a_note(voice) -> None:
    plan = voice.plan(
        voice.empty(), [], start_tick=0, until_tick=16, sampler=Sampler(Sampling(temperature=0))
    )
    events, ons = _notes(plan)
    assert ons >= 1 and events[0].tick == 0
