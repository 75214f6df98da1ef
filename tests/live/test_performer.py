"""The engine thread's logic, driven synchronously: a real ONNX model, an in-memory port
and a fake clock (no threads, no sleeps)."""

from __future__ import annotations

import pytest

from antiphon.live.engine import open_voice
from antiphon.live.performer import Cue, Heard, Performer
from antiphon.live.policy import PolicyConfig
from antiphon.live.ports import MemoryOutput
from antiphon.live.sampling import Sampler, Sampling
from antiphon.live.scheduler import Scheduler
from antiphon.live.session import ModelFile
from antiphon.live.shaping import Shaping
from antiphon.live.timeline import Timeline


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(model, *, mode="respond", seed=5, shaping=None):
    clock = FakeClock()
    out = MemoryOutput(now=clock)
    sched = Scheduler(out, clock, channel=0, skip_late_notes=None)
    voice = open_voice(ModelFile.open(model))
    perf = Performer(
        voice,
        sched,
        Timeline(120, origin=clock.t),
        Sampler(Sampling(seed=seed)),
        PolicyConfig(mode=mode),
        shaping=shaping,
        now=clock,
    )
    return perf, sched, out, clock, voice


def prompt(voice):
    """A call: C E G, as the context closes it (ticks up to 1.5 beats)."""
    from antiphon.live.context import StreamingContext

    ctx = StreamingContext(voice.grid)
    ticks = []
    for i, p in enumerate((60, 64, 67)):
        ticks += ctx.note_on(i * 0.5, p, 90) + ctx.note_off(i * 0.5 + 0.4, p)
    return ticks + ctx.advance(1.5)


def play_out(sched, clock, until):
    while True:
        nxt = sched.pump(clock.t)
        if nxt is None or nxt > until:
            return
        clock.t = nxt


def note_pairs(out):
    ons, pairs = {}, []
    for t, m in out.sent:
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            ons.setdefault(m[1], []).append(t)
        elif m[0] & 0xF0 in (0x80, 0x90) and ons.get(m[1]):
            pairs.append((ons[m[1]].pop(0), t, m[1]))
    return pairs, {p: v for p, v in ons.items() if v}


def test_an_answer_starts_exactly_at_the_phrase_end_and_lasts_its_length(trained_onnx) -> None:
    perf, sched, out, clock, voice = make(trained_onnx)
    perf.committed = voice.observe(perf.committed, prompt(voice))
    start = clock.t + 2.0  # the phrase end, still ahead: the answer is speculative
    perf._play(Cue(start, 3.0, [], perf.epoch))
    assert sched.pending() > 0 and not out.sent  # planned, nothing sent before its time
    play_out(sched, clock, until=start + 10)
    pairs, hanging = note_pairs(out)
    assert pairs and not hanging
    assert min(on for on, _, _ in pairs) == pytest.approx(start)
    assert max(off for _, off, _ in pairs) <= start + 3.0 + 0.07  # one tick of slack


def test_the_same_seed_answers_the_same_call_the_same_way(trained_onnx) -> None:
    def run():
        perf, sched, out, clock, voice = make(trained_onnx, seed=11)
        perf._play(Cue(clock.t + 1, 2.0, prompt(voice), perf.epoch))
        play_out(sched, clock, until=clock.t + 10)
        return [(round(t - 1000, 6), m) for t, m in out.sent]

    assert run() == run()


def test_a_stale_cue_plays_nothing(trained_onnx) -> None:
    perf, sched, out, clock, voice = make(trained_onnx)
    cue = Cue(clock.t + 1, 2.0, prompt(voice), perf.epoch)
    perf.interrupt(clock.t)  # the player played on before the phrase end
    perf._handle(cue)
    assert sched.pending() == 0 and not out.sent


def test_interrupt_releases_what_sounds_and_drops_what_is_planned(trained_onnx) -> None:
    perf, sched, out, clock, voice = make(trained_onnx)
    perf._play(Cue(clock.t, 4.0, prompt(voice), perf.epoch))
    play_out(sched, clock, until=clock.t + 1.0)
    assert perf.interrupt(clock.t)
    assert sched.pending() == 0 and sched.sounding() == []
    _, hanging = note_pairs(out)
    assert not hanging
    assert out.messages()[-1] == [0xB0, 123, 0]


def test_shaping_applies_to_live_answers(trained_onnx) -> None:
    shaping = Shaping(transpose=24, lowest=84, highest=108, polyphony=1, velocity_scale=0.5)
    perf, sched, out, clock, voice = make(trained_onnx, shaping=shaping)
    perf._play(Cue(clock.t, 4.0, prompt(voice), perf.epoch))
    play_out(sched, clock, until=clock.t + 10)
    pairs, _ = note_pairs(out)
    assert pairs and all(84 <= p <= 108 for _, _, p in pairs)
    assert all(m[2] <= 64 for m in out.messages() if m[0] & 0xF0 == 0x90)
    for a in pairs:  # never two notes at once
        assert sum(1 for b in pairs if b[0] <= a[0] < b[1]) == 1


def test_what_is_heard_is_batched_into_the_committed_state(trained_onnx) -> None:
    perf, _sched, _out, _clock, voice = make(trained_onnx)
    ticks = prompt(voice)
    tokens, _ = voice.encode(0, ticks)
    before = perf.committed.model.position
    for t in ticks:
        perf.inbox.put(Heard([t], player=True))
    perf._handle(perf._merge(perf.inbox.get()))
    assert perf.committed.model.position == before + len(tokens)
    assert perf.inbox.empty()


class SlowVoice:
    """A voice whose generation runs behind real time: its first note is long, and each
    step of generation takes ``step`` seconds on the fake clock. Its note-off comes only
    after the note has long been due."""

    def __init__(self, clock: FakeClock, step: float = 0.05) -> None:
        from antiphon.models.midi.notes import Grid

        self.grid = Grid(tpq=8)
        self.clock, self.step = clock, step
        self.pump = lambda: None  # the scheduler's thread, on the fake clock

    def empty(self) -> object:
        return None

    def observe(self, state: object, ticks: object) -> object:
        return state

    def plan(self, state, ticks, *, start_tick, until_tick, sampler, note_first=True):  # type: ignore[no-untyped-def]
        from antiphon.live.engine import PlanStep
        from antiphon.models.midi.codec import Decoded

        yield PlanStep([Decoded(start_tick, "on", 60, 90)], start_tick)
        for k in range(1, 12):  # a second note, then time passes, slowly generated
            self.clock.t += self.step
            self.pump()
            events = [Decoded(start_tick + k, "on", 64, 80), Decoded(start_tick + k + 1, "off", 64)]
            yield PlanStep(events if k == 2 else [], start_tick + k)
        yield PlanStep([Decoded(start_tick + 12, "off", 60)], start_tick + 12)


def test_a_long_first_note_sounds_on_time_while_generation_runs_behind() -> None:
    clock = FakeClock()
    out = MemoryOutput(now=clock)
    sched = Scheduler(out, clock, channel=0, skip_late_notes=0.1)
    voice = SlowVoice(clock)
    perf = Performer(
        voice,  # type: ignore[arg-type]
        sched,
        Timeline(120, origin=clock.t),
        Sampler(Sampling(seed=1)),
        PolicyConfig(),
        now=clock,
    )
    start = clock.t + 0.01  # the phrase end: generation has 10 ms before the first note
    voice.pump = lambda: sched.pump(clock.t)
    perf._play(Cue(start, 1.0, [], perf.epoch))
    play_out(sched, clock, until=start + 10)
    pairs, hanging = note_pairs(out)
    assert not hanging
    first = min(pairs)
    assert first[2] == 60
    # on time (the scheduler sent it when due, not once its note-off had been generated
    # 0.6 s later), and it still ends where the model ended it: 12 ticks = 0.75 s
    assert first[0] == pytest.approx(start, abs=0.05 + 1e-9)  # the first pump after it
    assert first[1] == pytest.approx(start + 12 / 16, abs=1e-6)
    assert sched.skipped == 0
    assert {p for _, _, p in pairs} == {60, 64}
