"""The note RNN: config, loss, recurrent state, export parity, its voice and its trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from antiphon.live.context import StreamingContext  # noqa: E402
from antiphon.live.engine import open_voice  # noqa: E402
from antiphon.live.notes_voice import MAX_CHORD, NoteVoice  # noqa: E402
from antiphon.live.sampling import Sampler, Sampling  # noqa: E402
from antiphon.live.session import ModelFile  # noqa: E402
from antiphon.models.midi.notes import Note, Performance  # noqa: E402
from antiphon.models.noternn import NoteRNN, NoteRNNConfig, pressure_mse  # noqa: E402
from antiphon.models.notes_train import NOTE_GRID, NoteWindows, performance_notes  # noqa: E402
from tests.checkpoints import export_verified, save_checkpoint  # noqa: E402


def tiny(**kw) -> NoteRNN:
    torch.manual_seed(0)
    return NoteRNN(NoteRNNConfig(hidden=24, n_layer=2, block_size=32, **kw)).eval()


def random_notes(batch: int, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    pitch = torch.randint(21, 109, (batch, n), generator=g)
    step = torch.randint(0, 9, (batch, n), generator=g).float() / 8
    duration = torch.randint(1, 17, (batch, n), generator=g).float() / 8
    return pitch, step, duration


def test_config_round_trips_through_json() -> None:
    c = NoteRNNConfig(hidden=64, n_layer=2, max_beats=4.0, pitch_weight=0.1)
    assert NoteRNNConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert NoteRNNConfig.from_dict({**c.to_dict(), "unknown": 1}) == c
    d = NoteRNNConfig()  # the tutorial's model size and loss weights are the defaults
    assert (d.hidden, d.n_layer, d.pitches) == (128, 1, 128)
    assert (d.pitch_weight, d.step_weight, d.duration_weight, d.positive_pressure) == (
        0.05,
        1.0,
        1.0,
        10.0,
    )


def test_the_positive_pressure_bites_only_on_negative_predictions() -> None:
    target = torch.zeros(4)
    assert pressure_mse(torch.full((4,), 0.5), target, 10.0).item() == pytest.approx(0.25)
    # mse 0.25 plus 10 * 0.5 for being below zero
    assert pressure_mse(torch.full((4,), -0.5), target, 10.0).item() == pytest.approx(5.25)
    mixed = torch.tensor([-1.0, 1.0])
    assert pressure_mse(mixed, torch.zeros(2), 10.0).item() == pytest.approx((1 + 1 + 10) / 2)


def test_loss_terms_are_the_tutorials_weighted_sum() -> None:
    m = tiny()
    p, s, d = random_notes(3, 17)
    terms = m.loss_terms(p, s, d)
    logits, ps, pd, _ = m(p[:, :-1], s[:, :-1], d[:, :-1])
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 128), p[:, 1:].reshape(-1))
    assert terms["pitch"].item() == pytest.approx(ce.item(), rel=1e-6)
    assert terms["step"].item() == pytest.approx(pressure_mse(ps, s[:, 1:], 10.0).item())
    assert terms["duration"].item() == pytest.approx(pressure_mse(pd, d[:, 1:], 10.0).item())
    expected = 0.05 * terms["pitch"] + terms["step"] + terms["duration"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    heavier = tiny(pitch_weight=1.0).loss_terms(p, s, d)
    assert heavier["total"].item() == pytest.approx(
        (heavier["pitch"] + heavier["step"] + heavier["duration"]).item(), rel=1e-6
    )


def test_the_tutorials_scalar_pitch_input_is_one_setting_away() -> None:
    scalar, embedded = tiny(pitch_embedding=0), tiny(pitch_embedding=8)
    assert scalar.embed is None and scalar.lstm.input_size == 3  # (pitch / 128, step, duration)
    assert embedded.embed.weight.shape == (128, 8) and embedded.lstm.input_size == 10


@pytest.mark.parametrize("embedding", [0, 8])
@torch.no_grad()
def test_note_by_note_with_the_state_equals_the_whole_sequence(embedding: int) -> None:
    m = tiny(pitch_embedding=embedding)
    p, s, d = random_notes(2, 25)
    full = m(p, s, d)
    state = m.empty_state(2)
    logits, steps, durations = [], [], []
    for i in range(25):
        out = m(p[:, i : i + 1], s[:, i : i + 1], d[:, i : i + 1], state)
        logits.append(out[0])
        steps.append(out[1])
        durations.append(out[2])
        state = out[3]
    assert torch.allclose(torch.cat(logits, 1), full[0], atol=1e-5)
    assert torch.allclose(torch.cat(steps, 1), full[1], atol=1e-5)
    assert torch.allclose(torch.cat(durations, 1), full[2], atol=1e-5)
    assert torch.allclose(state[0], full[3][0], atol=1e-5)
    assert torch.allclose(state[1], full[3][1], atol=1e-5)
    # a chunk after a prefix continues the same way
    head = m(p[:, :10], s[:, :10], d[:, :10])
    tail = m(p[:, 10:], s[:, 10:], d[:, 10:], head[3])
    assert torch.allclose(tail[0], full[0][:, 10:], atol=1e-5)


def test_notes_are_read_in_start_pitch_order_with_steps_and_durations() -> None:
    perf = Performance(
        NOTE_GRID,
        [Note(8, 12, 64, 80), Note(0, 16, 60, 80), Note(8, 10, 67, 80), Note(20, 21, 62, 80)],
        [],
    )
    assert performance_notes(perf).tolist() == [
        [60, 0, 16],
        [64, 8, 4],
        [67, 0, 2],
        [62, 12, 1],
    ]


def test_windows_transpose_within_the_grid() -> None:
    from antiphon.models.notes_train import NoteSplit

    notes = np.asarray([[21 + i % 88, 4, 4] for i in range(200)], dtype=np.int32)
    windows = NoteWindows(NoteSplit(notes, np.asarray([0, 200])), 16, 0, 6, NOTE_GRID)
    batch = windows.batch(64)
    assert batch.shape == (64, 17, 3)
    assert batch[..., 0].min() >= 21 and batch[..., 0].max() <= 108
    assert (batch[..., 1:] == 4).all()


# -- export and the voice, on a tiny random model -------------------------------------------
@pytest.fixture(scope="module", params=[8, 0], ids=["embedding", "tutorial-input"])
def note_onnx(request, tmp_path_factory) -> Path:

    model = tiny(pitch_embedding=request.param)
    ckpt = tmp_path_factory.mktemp("note-rnn") / "ckpt.pt"
    save_checkpoint(ckpt, "note-rnn", model, grid=NOTE_GRID.to_dict())
    return export_verified(ckpt, ckpt.parent / "note.onnx")[0]


def test_export_is_verified_and_describes_itself(note_onnx) -> None:
    from antiphon.export.graphs import graph_for
    from antiphon.export.reload import torch_from_onnx
    from antiphon.export.verify import verify

    mf = ModelFile.open(note_onnx)
    info = mf.info
    assert (info.family, info.representation, info.max_context) == ("note-rnn", "notes", 32)
    assert info.grid == NOTE_GRID.to_dict() and info.vocab == []
    assert [(p.input, p.output, p.axis) for p in info.signature.state] == [
        ("past_h", "present_h", -1),
        ("past_c", "present_c", -1),
    ]
    assert info.verification["greedy_identical"] is True
    assert info.verification["max_abs_diff"] < 1e-4
    # the torch model rebuilt from the file alone (what `antiphon bench` runs) agrees too
    model = torch_from_onnx(note_onnx)
    assert verify(graph_for("note-rnn", model), mf).greedy_identical


def test_verification_catches_a_graph_that_disagrees(note_onnx) -> None:
    from antiphon.export.graphs import graph_for
    from antiphon.export.reload import torch_from_onnx
    from antiphon.export.verify import ParityError, verify

    model = torch_from_onnx(note_onnx)
    with torch.no_grad():
        model.step_head.bias.add_(0.5)
    with pytest.raises(ParityError):
        verify(graph_for("note-rnn", model), ModelFile.open(note_onnx))


class Recording:
    """A model file that remembers every feed it ran."""

    def __init__(self, mf: ModelFile) -> None:
        self.mf, self.info, self.path = mf, mf.info, mf.path
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append(feed)
        return self.mf.run(feed)

    def notes(self) -> list[tuple[int, float, float]]:
        return [
            (int(p), float(s), float(d))
            for f in self.feeds
            for p, s, d in zip(f["pitch"][0], f["step"][0], f["duration"][0])
        ]


def test_the_voice_hears_notes_once_they_and_every_earlier_note_have_ended(note_onnx) -> None:
    rec = Recording(ModelFile.open(note_onnx))
    voice = NoteVoice(rec)
    rec.feeds.clear()  # the warm-up run
    ctx = StreamingContext(voice.grid)
    state = voice.empty()
    # C held two beats while E and G pass over it; then a two-note chord; then, after a
    # rest of 20 beats, one more note (its step is capped at max_beats).
    state = voice.observe(state, ctx.note_on(0.0, 60, 80))
    state = voice.observe(state, ctx.note_on(0.5, 64, 90))
    state = voice.observe(state, ctx.note_off(1.0, 64) + ctx.note_on(1.0, 67, 100))
    state = voice.observe(state, ctx.note_off(1.5, 67) + ctx.advance(1.9))
    assert rec.feeds == [] and len(state.pending) == 3  # the held C keeps E and G waiting
    state = voice.observe(state, ctx.note_off(2.0, 60) + ctx.note_on(2.0, 72, 70))
    state = voice.observe(state, ctx.note_on(2.0, 76, 70) + ctx.advance(2.5))
    assert rec.notes() == [(60, 0.0, 2.0), (64, 0.5, 0.5), (67, 0.5, 0.5)]
    assert len(rec.feeds) == 1  # read together, in one run
    state = voice.observe(state, ctx.note_off(3.0, 72) + ctx.note_off(3.0, 76))
    state = voice.observe(state, ctx.note_on(23.0, 62, 60) + ctx.note_off(23.25, 62))
    state = voice.observe(state, ctx.finish())
    assert rec.notes()[3:] == [(72, 1.0, 1.0), (76, 0.0, 1.0), (62, 8.0, 0.25)]
    assert state.pending == () and state.notes == 6
    assert state.last_start == 23 * voice.grid.tpq
    assert voice.velocity(state) == voice.grid.velocity(round((80 + 90 + 100 + 70 + 70 + 60) / 6))


def test_a_key_held_for_long_does_not_keep_the_model_deaf(note_onnx) -> None:
    from antiphon.live.notes_voice import MAX_PENDING

    voice = NoteVoice(ModelFile.open(note_onnx))
    ctx = StreamingContext(voice.grid)
    state = voice.observe(voice.empty(), ctx.note_on(0.0, 40, 80))
    for i in range(MAX_PENDING + 10):  # a melody over a held bass note
        beat = 1 + i * 0.5
        state = voice.observe(state, ctx.note_on(beat, 60 + i % 12, 80))
        state = voice.observe(state, ctx.note_off(beat + 0.25, 60 + i % 12))
    assert len(state.pending) <= MAX_PENDING and state.notes >= 10
    # the bass was read as lasting until the melody's first note
    assert state.notes + len(state.pending) == MAX_PENDING + 11
    state = voice.observe(state, ctx.note_off(100.0, 40) + ctx.finish())
    assert state.pending == () and state.notes == MAX_PENDING + 11


def test_a_plan_reads_held_keys_as_ending_where_it_starts(note_onnx) -> None:
    rec = Recording(ModelFile.open(note_onnx))
    voice = NoteVoice(rec)
    ctx = StreamingContext(voice.grid)
    state = voice.observe(voice.empty(), ctx.note_on(0.0, 60, 80) + ctx.advance(1.0))
    rec.feeds.clear()
    plan = voice.plan(state, [], start_tick=16, until_tick=32, sampler=Sampler(Sampling(seed=0)))
    assert rec.notes() == [(60, 0.0, 2.0)]  # the held C, up to the answer's start
    assert next(plan).events[0].tick == 16


def closed(events) -> bool:
    sounding: dict[int, int] = {}
    for e in events:
        if e.kind == "on":
            assert sounding.get(e.pitch, 0) == 0, "a key struck twice without a note-off"
            sounding[e.pitch] = 1
        elif e.kind == "off":
            assert sounding.get(e.pitch, 0) == 1
            sounding[e.pitch] = 0
    return not any(sounding.values())


@pytest.mark.parametrize("note_first", [True, False])
@pytest.mark.parametrize("temperature", [0.0, 1.0, 3.0])
def test_plans_are_time_ordered_and_close_every_note(note_onnx, note_first, temperature) -> None:
    voice = open_voice(ModelFile.open(note_onnx), max_gap_beats=4)
    assert isinstance(voice, NoteVoice)
    ctx = StreamingContext(voice.grid)
    ticks = []
    for i, p in enumerate((60, 62, 64, 65, 67)):
        ticks += ctx.note_on(i * 0.5, p, 80) + ctx.note_off(i * 0.5 + 0.4, p)
    state = voice.observe(voice.empty(), ticks + ctx.finish())
    start, until = 40, 40 + 16 * 8
    sampler = Sampler(Sampling(temperature=temperature, top_p=0.9, seed=3))
    plan = voice.plan(
        state, [], start_tick=start, until_tick=until, sampler=sampler, note_first=note_first
    )
    steps = list(plan)
    events = [e for s in steps for e in s.events]
    ons = [e for e in events if e.kind == "on"]
    assert ons and closed(events)
    assert all(start <= e.tick <= until for e in events)
    assert [e.tick for e in events] == sorted(e.tick for e in events)
    assert all(21 <= e.pitch <= 108 and e.velocity == voice.grid.velocity(80) for e in ons)
    assert max(sum(e.tick == t for e in ons) for t in {e.tick for e in ons}) <= MAX_CHORD
    if note_first:
        assert ons[0].tick == start
    assert sum(s.tokens for s in steps) == len(ons)
    assert steps[-1].tokens == 0 and steps[-1].tick == until


def test_a_voice_with_nothing_heard_still_answers(note_onnx) -> None:
    voice = open_voice(ModelFile.open(note_onnx))
    steps = list(
        voice.plan(voice.empty(), [], start_tick=0, until_tick=64, sampler=Sampler(Sampling()))
    )
    events = [e for s in steps for e in s.events]
    assert events[0].kind == "on" and events[0].tick == 0 and closed(events)


# -- training --------------------------------------------------------------------------------
def test_training_writes_a_checkpoint_that_resumes(synth_corpus, tmp_path) -> None:
    from antiphon.models.train import TrainConfig, load_checkpoint, train

    cfg = TrainConfig(
        arch="note-rnn",
        data=str(synth_corpus),
        out=str(tmp_path / "run"),
        steps=6,
        batch_size=4,
        block_size=16,
        warmup=2,
        eval_every=3,
        eval_pieces=2,
        model={"hidden": 16},
    )
    first = train(cfg, progress=False)
    ckpt = load_checkpoint(first["checkpoint"])
    assert ckpt["family"] == "note-rnn" and ckpt["grid"] == NOTE_GRID.to_dict()
    assert ckpt["model_config"]["hidden"] == 16 and ckpt["model_config"]["block_size"] == 16
    assert [h["step"] for h in ckpt["history"]] == [3, 6]
    for key in ("valid_loss", "valid_nll", "bigram_valid_nll", "mean_step_valid_mse"):
        assert np.isfinite(first[key])
    cfg.steps = 9
    resumed = train(cfg, resume=True, progress=False)
    assert load_checkpoint(resumed["checkpoint"])["step"] == 9
