"""The piano-roll families: config, exact NADE likelihood, frames from MIDI, the trainer."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from antiphon.models.midi.notes import Grid, Note, TickEvents  # noqa: E402
from antiphon.models.midi.polyphonic import (  # noqa: E402
    FrameCursor,
    file_roll,
    frames_to_roll,
    from_roll,
    to_roll,
)
from antiphon.models.pianoroll import PianoRollConfig  # noqa: E402
from antiphon.models.registry import family  # noqa: E402


def small(cell: str = "gru", head: str = "nade", keys: int = 6, seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = family(f"pianoroll-{cell}").build(
        {"head": head, "n_keys": keys, "n_hidden": 16, "nade_hidden": 8, "dropout": 0.0}
    )
    with torch.no_grad():  # random weights large enough that keys really depend on each other
        for p in model.parameters():
            p.normal_(0.0, 0.8)
    return model.eval()


def test_config_round_trip() -> None:
    c = PianoRollConfig(cell="lstm", head="sigmoid", n_hidden=64, dropout=0.5, frame_ticks=4)
    d = json.loads(json.dumps(c.to_dict()))
    assert PianoRollConfig.from_dict(d) == c
    assert PianoRollConfig.from_dict({**d, "unknown": 1}) == c
    with pytest.raises(ValueError, match="head"):
        PianoRollConfig(head="softmax")


def test_the_family_fixes_the_cell() -> None:
    assert family("pianoroll-lstm").build({"cell": "gru"}).config.cell == "lstm"
    assert family("pianoroll-gru").build({}).config.cell == "gru"


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_nade_nll_is_the_product_of_its_sequential_conditionals(cell: str) -> None:
    model = small(cell)
    K = model.config.n_keys
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.random((1, 5, K)) < 0.4, dtype=torch.float32)
    with torch.no_grad():
        nll, _ = model.frame_nll(x)  # one pass, (1, 5)
        # key by key: the history's state, then the frame with only the keys below i set
        for s in range(x.shape[1]):
            _, state = model(x[:, :s]) if s else (None, None)
            total = 0.0
            for i in range(K):
                partial = x[:, s : s + 1].clone()
                partial[..., i:] = 0
                logit = model(partial, state)[0][0, 0, i]
                p = torch.sigmoid(logit)
                total -= float(torch.log(p if x[0, s, i] else 1 - p))
            assert float(nll[0, s]) == pytest.approx(total, abs=1e-4)


@pytest.mark.parametrize("head", ["sigmoid", "nade"])
def test_frame_probabilities_sum_to_one(head: str) -> None:
    """Over all 2^K frames after the same history: a normalized distribution, exactly."""
    model = small(head=head)
    K = model.config.n_keys
    frames = torch.tensor(list(itertools.product([0.0, 1.0], repeat=K)))  # (2^K, K)
    history = torch.tensor(np.random.default_rng(2).random((1, 3, K)) < 0.5, dtype=torch.float32)
    with torch.no_grad():
        _, state = model(history)
        state = tuple(s.expand(-1, len(frames), -1).contiguous() for s in state)
        nll, _ = model.frame_nll(frames[:, None], state)
    assert float(torch.exp(-nll.double()).sum()) == pytest.approx(1.0, abs=1e-5)


def test_sparse_and_dense_nade_heads_agree() -> None:
    model = small(keys=88)
    x = torch.tensor(np.random.default_rng(3).random((2, 7, 88)) < 0.1, dtype=torch.float32)
    cond = torch.randn(2, 7, 16)
    bias_h = model.hidden_bias(cond)
    dense, sparse = model._nade_dense(bias_h, x), model._nade_segments(bias_h, x)
    assert torch.allclose(dense, sparse, atol=1e-4)


def test_sigmoid_head_ignores_the_frame_it_scores() -> None:
    model = small(head="sigmoid")
    a = torch.zeros(1, 1, 6)
    b = torch.ones(1, 1, 6)
    with torch.no_grad():
        assert torch.equal(model(a)[0], model(b)[0])


# -- frames ----------------------------------------------------------------------------------
def _tick(t: int, ons=(), offs=()) -> TickEvents:  # type: ignore[no-untyped-def]
    return TickEvents(
        t, None, [Note(0, t, p, 64) for p in offs], [Note(t, None, p, 64) for p in ons]
    )


def test_frames_hold_every_key_that_sounds_in_them() -> None:
    # frames of 4 ticks; the piece starts at its first note (tick 8, frame 2)
    ticks = [
        _tick(8, ons=[60, 64]),
        _tick(9, offs=[64]),  # sounded in frame 2 only
        _tick(12, offs=[60], ons=[67]),  # 60 ends exactly at frame 3's start: not in it
        _tick(14, ons=[72]),
        _tick(24, offs=[67, 72]),  # frames 4 and 5 hold 67 and 72; frame 6 is silent
        _tick(29, ons=[21]),
        _tick(30, offs=[21]),
    ]
    cursor, frames = FrameCursor(4).hear(ticks)
    frames += cursor.finish()
    pitches = [sorted(k + 21 for k in f) for f in frames]
    assert pitches == [[60, 64], [67, 72], [67, 72], [67, 72], [], [21]]  # frames 2..7


def test_long_gaps_are_cut() -> None:
    ticks = [_tick(0, ons=[60]), _tick(1, offs=[60]), _tick(400, ons=[62]), _tick(401, offs=[62])]
    _, frames = FrameCursor(2).hear(ticks, max_frames=8)
    assert len(frames) == 8 and frames[0] == {60 - 21} and not any(frames[1:])
    assert len(FrameCursor(2).hear(ticks)[1]) == 200


def test_benchmark_pieces_round_trip() -> None:
    piece = [[60, 64, 67], [], [21, 108]]
    roll = to_roll(piece)
    assert roll.shape == (3, 88) and from_roll(roll) == piece


def test_file_frames_equal_streamed_frames(chorale) -> None:
    """A file read for training and the same ticks heard one by one make the same frames."""
    from antiphon.models.midi.notes import file_ticks

    grid = Grid(8)
    roll = file_roll(chorale, grid, 2)
    cursor, frames = FrameCursor(2), []
    for ev in file_ticks(chorale, grid):
        cursor, new = cursor.hear([ev])
        frames += new
    assert np.array_equal(frames_to_roll(frames + cursor.finish()), roll)
    assert 2 <= roll.sum(axis=1).mean() <= 5  # a four-voice chorale
    assert not roll[:, : 36 - 21].any()


# -- training --------------------------------------------------------------------------------
def _cfg(tmp, data, **kw):  # type: ignore[no-untyped-def]
    from antiphon.models.train import TrainConfig

    base = {
        "arch": "pianoroll-gru",
        "data": str(data),
        "out": str(tmp),
        "steps": 48,
        "batch_size": 8,
        "block_size": 48,
        "lr": 5e-3,
        "warmup": 4,
        "eval_every": 16,
        "eval_pieces": 2,
        "transpose": 2,
        "model": {"n_hidden": 24, "nade_hidden": 12, "dropout": 0.1},
    }
    return TrainConfig(**{**base, **kw})


def test_training_on_a_midi_corpus_learns_and_resumes_exactly(synth_corpus, tmp_path) -> None:
    from antiphon.models.frames_train import train_frames
    from antiphon.models.train import load_checkpoint

    full = train_frames(_cfg(tmp_path / "a", synth_corpus), progress=False)
    assert full["valid_nll"] < full["marginal_valid_nll"]  # beats independent key rates
    ckpt = load_checkpoint(full["checkpoint"])
    assert ckpt["family"] == "pianoroll-gru" and ckpt["grid"]["tpq"] == 8
    assert ckpt["model_config"]["seq_len"] == 48 and ckpt["data"]["pieces"]["train"] > 0

    class Interrupted(Exception):
        pass

    def interrupt(msg: str) -> None:  # a crash after the step-16 checkpoint was written
        if msg.startswith("step 32"):
            raise Interrupted

    with pytest.raises(Interrupted):
        train_frames(_cfg(tmp_path / "b", synth_corpus), progress=False, log=interrupt)
    assert load_checkpoint(tmp_path / "b" / "ckpt.pt")["step"] == 16
    resumed = train_frames(_cfg(tmp_path / "b", synth_corpus), resume=True, progress=False)
    a = load_checkpoint(full["checkpoint"])["resume"]["model"]
    b = load_checkpoint(resumed["checkpoint"])["resume"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["valid_nll"] == pytest.approx(full["valid_nll"])


def test_training_on_a_benchmark_file(tmp_path) -> None:
    from antiphon.models.frames_train import train_frames

    rng = np.random.default_rng(0)
    chords = [[60, 64, 67], [62, 65, 69], [59, 62, 67]]
    piece = lambda n: [chords[int(i)] for i in rng.integers(0, 3, n)]  # noqa: E731
    path = tmp_path / "chords.json"
    path.write_text(json.dumps({"train": [piece(40) for _ in range(12)], "valid": [piece(30)]}))
    cfg = _cfg(
        tmp_path / "run", f"polyphonic:{path}", steps=80, batch_size=12, lr=3e-2, transpose=0
    )
    cfg.model = {**cfg.model, "head": "nade", "nade_hidden": 24, "dropout": 0.0}
    result = train_frames(cfg, progress=False)
    # Three equally likely chords: log 3 = 1.1 nats a frame is the floor. Keys as
    # independent coins cannot go below the marginal baseline; the NADE head goes far below.
    assert result["valid_nll"] < 3.0 < result["marginal_valid_nll"] - 1.5
