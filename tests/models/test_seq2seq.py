"""The encoder-decoder family: model, training objective, two-graph export, voice."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from antiphon.live.context import StreamingContext  # noqa: E402
from antiphon.live.engine import open_voice  # noqa: E402
from antiphon.live.sampling import Sampler, Sampling  # noqa: E402
from antiphon.live.seq2seq_voice import Context, Seq2SeqVoice  # noqa: E402
from antiphon.live.session import ModelFile  # noqa: E402
from antiphon.models.seq2seq import Seq2Seq, Seq2SeqConfig  # noqa: E402
from tests.checkpoints import export_verified, save_checkpoint  # noqa: E402

SMALL = {"n_embd": 16, "encoder_hidden": 12, "decoder_hidden": 24, "dropout": 0.0}


def tiny(vocab: int = 40, **kw: object) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(vocab_size=vocab, block_size=64, **{**SMALL, **kw})).eval()


def test_config_round_trips_through_json() -> None:
    c = Seq2SeqConfig(encoder_hidden=1024, decoder_hidden=1024, block_size=256)
    assert Seq2SeqConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert Seq2SeqConfig.from_dict({**c.to_dict(), "unknown": 1}) == c


@torch.no_grad()
def test_decoder_steps_equal_the_teacher_forced_decoder() -> None:
    m = tiny()
    x = torch.randint(0, 40, (2, 30))
    memory, state = m.encode(x[:, :12])
    assert memory.shape == (2, 12, 24) and state[0].shape == (2, 2, 24)
    forced, end = m.decode(x[:, 11:], memory, state)
    steps = []
    for i in range(11, 30):
        logits, state = m.decode(x[:, i : i + 1], memory, state)
        steps.append(logits)
    assert torch.allclose(torch.cat(steps, dim=1), forced, atol=1e-5)
    assert torch.allclose(state[0], end[0], atol=1e-5) and torch.allclose(state[1], end[1])


@torch.no_grad()
def test_log_probs_score_every_row_causally() -> None:
    m = tiny()
    x = torch.randint(0, 40, (1, 25))
    lp = m.log_probs(x)
    assert lp.shape == (1, 25, 40)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(1, 25), atol=1e-5)
    for j in (1, 11, 12, 13, 24):  # around the split (k = 12) and at both ends
        y = x.clone()
        y[0, j] = (y[0, j] + 1) % 40
        changed = (m.log_probs(y) - lp).abs().amax(-1)[0] > 0
        assert not changed[:j].any(), f"rows before {j} saw token {j}"
        assert changed[j:].any()


def test_teacher_forced_loss_decreases_on_a_tiny_batch() -> None:
    m = tiny().train()
    torch.manual_seed(1)
    batch = torch.randint(0, 40, (4, 33))
    x, y = batch[:, :-1], batch[:, 1:]

    def loss_at(seed: int) -> float:  # the random split point comes from torch's RNG
        torch.manual_seed(seed)
        with torch.no_grad():
            return float(np.mean([m.loss(x, y).item() for _ in range(8)]))

    before = loss_at(5)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(60):
        loss = m.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_at(5) < before - 0.5


# -- export and voice: a tiny random model through the real checkpoint/export path ----------


@pytest.fixture(scope="module")
def seq2seq_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, exported and verified .onnx) of a tiny random-initialised model."""
    from antiphon.models.midi.tokenizer import Tokenizer
    from antiphon.models.registry import family

    tok = Tokenizer.create()
    torch.manual_seed(0)
    model = family("seq2seq").build({"vocab_size": len(tok), "block_size": 48, **SMALL})
    ckpt = tmp_path_factory.mktemp("s2s") / "ckpt.pt"
    save_checkpoint(ckpt, "seq2seq", model, tokenizer=tok.to_params())
    return ckpt, export_verified(ckpt, ckpt.parent / "s2s.onnx")[0]


def test_export_holds_both_graphs_and_verifies(seq2seq_onnx) -> None:
    from antiphon.export.graphs import graph_for
    from antiphon.export.verify import CASES, verify
    from antiphon.models.train import load_checkpoint, model_from_checkpoint

    ckpt, path = seq2seq_onnx
    mf = ModelFile.open(path)
    assert {i.name for i in mf.session.get_inputs()} == {
        "context", "tokens", "memory", "past_h", "past_c"
    }  # fmt: skip
    assert set(mf.output_names) == {
        "encoded", "init_h", "init_c", "logits", "present_h", "present_c"
    }  # fmt: skip
    assert mf.info.verification["greedy_identical"] is True
    graph = graph_for("seq2seq", model_from_checkpoint(load_checkpoint(ckpt)))
    report = verify(graph, mf)
    assert [(c["seq"], c["cache"]) for c in report.cases] == list(CASES)
    assert report.max_abs_diff < 1e-4 and report.greedy_identical


def test_a_step_skips_the_encoder_and_an_encoding_skips_the_decoder(seq2seq_onnx) -> None:
    mf = ModelFile.open(seq2seq_onnx[1])
    h = np.random.default_rng(0).normal(size=(2, 1, 24)).astype(np.float32)
    out = mf.run(
        {
            "context": np.arange(4, 9)[None],
            "tokens": np.zeros((1, 0), dtype=np.int64),
            "memory": np.zeros((1, 0, 24), dtype=np.float32),
            "past_h": h,
            "past_c": h,
        }
    )
    assert out["encoded"].shape == (1, 5, 24) and out["logits"].shape == (
        1,
        0,
        len(mf.info.vocab),
    )
    assert np.array_equal(out["present_h"], h)  # no tokens: the state passes through
    step = mf.run(
        {
            "context": np.zeros((1, 0), dtype=np.int64),
            "tokens": np.array([[7]]),
            "memory": out["encoded"],
            "past_h": out["init_h"],
            "past_c": out["init_c"],
        }
    )
    assert step["encoded"].shape == (1, 0, 24) and step["logits"].shape[1] == 1


def test_window_log_probs_through_onnxruntime_equal_torch(seq2seq_onnx) -> None:
    from antiphon.live.seq2seq_voice import Seq2SeqStepper
    from antiphon.models.train import load_checkpoint, model_from_checkpoint, torch_scorer

    ckpt, path = seq2seq_onnx
    mf = ModelFile.open(path)
    stepper = Seq2SeqStepper(mf.run, mf.info.signature, mf.info.max_context)
    score = torch_scorer(model_from_checkpoint(load_checkpoint(ckpt)))
    window = np.random.default_rng(3).integers(4, len(mf.info.vocab), size=37)
    assert np.allclose(stepper.log_probs(window.tolist()), score(window), atol=1e-4)


def test_the_torch_model_is_rebuilt_from_the_onnx_file(seq2seq_onnx) -> None:
    from antiphon.export.reload import torch_from_onnx
    from antiphon.models.train import load_checkpoint

    ckpt, path = seq2seq_onnx
    rebuilt = torch_from_onnx(path).state_dict()
    for k, v in load_checkpoint(ckpt)["model"].items():
        assert torch.equal(rebuilt[k], v), k


def ticks_of(grid, notes):  # type: ignore[no-untyped-def]
    ctx = StreamingContext(grid)
    out = []
    for beat, pitch, length in notes:
        out += ctx.note_on(beat, pitch, 80)
        out += ctx.note_off(beat + length, pitch)
    return out + ctx.finish()


def test_the_voice_keeps_a_window_of_tokens(seq2seq_onnx) -> None:
    voice = open_voice(ModelFile.open(seq2seq_onnx[1]))
    assert isinstance(voice, Seq2SeqVoice)
    ticks = ticks_of(voice.grid, [(i * 0.25, 60 + i % 12, 0.2) for i in range(60)])
    state = voice.observe(voice.empty(), ticks)
    tokens, last = voice.encode(0, ticks)
    assert isinstance(state.model, Context) and state.last_tick == last
    assert len(tokens) > 48 and state.model.tokens == tuple(tokens[-48:])


def test_the_voice_plans_lazily_and_closes_its_notes(seq2seq_onnx) -> None:
    voice = open_voice(ModelFile.open(seq2seq_onnx[1]))
    state = voice.observe(voice.empty(), ticks_of(voice.grid, [(0, 60, 0.5), (0.5, 64, 0.5)]))
    plan = voice.plan(state, [], start_tick=16, until_tick=80, sampler=Sampler(Sampling(seed=0)))
    assert inspect.isgenerator(plan)
    steps = list(plan)
    events = [e for s in steps for e in s.events]
    ons = [e for e in events if e.kind == "on"]
    assert ons and ons[0].tick == 16  # note_first: the answer starts at once
    sounding: dict[int, int] = {}
    for e in events:
        if e.kind in ("on", "off"):
            sounding[e.pitch] = sounding.get(e.pitch, 0) + (1 if e.kind == "on" else -1)
    assert not any(sounding.values())
    assert steps[-1].tick >= 80 and steps[-1].tokens == 0  # the closing note-offs
    assert sum(s.tokens for s in steps) == len(steps) - 1
