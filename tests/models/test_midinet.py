"""MidiNet: bars and chords from notes, the conditioning (previous bar and chord change the
bar, the same latent gives the same bar), BatchNorm built once, the exported graph and its
voice (a seed gives the same bars, the player's last bar and chord are the conditions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from antiphon.models.midi.bars import (
    REST,
    STEPS,
    bar_of_notes,
    chord_code,
    chord_vector,
    detect_chord,
    melody_notes,
    melody_roll,
    piece_bars,
)

torch = pytest.importorskip("torch")

C_MAJOR, A_MINOR = (0, 0), (9, 1)


def weights(*pcs: int) -> np.ndarray:
    w = np.zeros(12)
    for pc in pcs:
        w[pc % 12] += 1
    return w


def test_detect_chord_known_triads() -> None:
    assert detect_chord(weights(60, 64, 67)) == C_MAJOR
    assert detect_chord(weights(57, 60, 64)) == A_MINOR
    assert detect_chord(weights(62, 66, 69, 72)) == (2, 0)  # D7: D major holds 3 of 4
    assert detect_chord(weights(60, 67)) is None  # no third: major or minor cannot be told
    assert detect_chord(weights(60, 61, 62, 63, 66)) is None  # no triad holds 60 %
    assert detect_chord(np.zeros(12)) is None
    assert chord_vector(A_MINOR).tolist() == [0] * 9 + [1, 0, 0] + [0, 1]
    assert chord_vector(None).sum() == 0


def test_bar_skyline_and_lower_voice_chord() -> None:
    # A melody of quarter notes over a held A minor triad (tpq 8: a step is 2 ticks).
    melody = [(0, 8, 76), (8, 16, 74), (16, 32, 72)]
    chord = [(0, 32, 57), (0, 32, 60), (0, 32, 64)]
    m, code = bar_of_notes(melody + chord, 0, 2)
    assert m.tolist() == [76] * 4 + [74] * 4 + [72] * 8
    assert code == chord_code(A_MINOR)
    # A bare tune has no chord; a bar of nothing is all rests.
    assert bar_of_notes(melody, 0, 2)[1] == -1
    assert bar_of_notes([], 0, 2)[0].tolist() == [REST] * STEPS
    # An arpeggio alone spells its chord.
    arpeggio = [(0, 8, 60), (8, 16, 64), (16, 24, 67), (24, 32, 72)]
    assert bar_of_notes(arpeggio, 0, 2)[1] == chord_code(C_MAJOR)
    rows = piece_bars(melody + chord + [(40, 48, 79)], tpq=8)
    assert rows.shape == (2, STEPS + 1) and rows[1, 4:8].tolist() == [79] * 4


def test_melody_roll_and_notes_round_trip() -> None:
    melody = [72] * 4 + [REST] * 4 + [48] * 2 + [74] * 6
    roll = melody_roll(melody, pitch_lo=55, n_keys=36)
    assert roll.shape == (STEPS, 37) and (roll.sum(1) == 1).all()
    assert roll[4:8, 36].all()  # rests in the last column
    assert roll[8, 48 + 12 - 55] == 1  # 48 folded up an octave into the keys
    assert melody_notes(melody, 100, 2) == [(100, 108, 72), (116, 120, 48), (120, 132, 74)]


def _tiny(seed: int = 0):  # type: ignore[no-untyped-def]
    from antiphon.models.midinet import MidiNetConfig, MidiNetGenerator

    torch.manual_seed(seed)
    cfg = MidiNetConfig(base=8, dense=32, cond_channels=4, noise=8, n_keys=12, pitch_lo=60)
    return MidiNetGenerator(cfg).eval()


def _inputs(g, seed: int = 1):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    c = g.config
    prev = melody_roll(rng.integers(60, 72, STEPS), c.pitch_lo, c.n_keys)[None]
    return (
        torch.from_numpy(rng.standard_normal((1, c.noise)).astype(np.float32)),
        torch.from_numpy(prev),
        torch.from_numpy(chord_vector(C_MAJOR)[None]),
    )


def _trained_norms(g) -> None:  # type: ignore[no-untyped-def]
    """Give every BatchNorm statistics of its own, as training would."""
    for m in g.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


def test_previous_bar_and_chord_change_the_bar_same_latent_same_bar() -> None:
    g = _tiny()
    _trained_norms(g)
    noise, prev, chord = _inputs(g)
    with torch.no_grad():
        base = g(noise, prev, chord)
        assert torch.equal(base, g(noise.clone(), prev.clone(), chord.clone()))
        other_prev = torch.roll(prev, shifts=3, dims=-1)
        assert (g(noise, other_prev, chord) - base).abs().max() > 1e-3
        minor = torch.from_numpy(chord_vector(A_MINOR)[None])
        assert (g(noise, prev, minor) - base).abs().max() > 1e-3
        assert (g(noise + 1.0, prev, chord) - base).abs().max() > 1e-3


def test_batchnorm_layers_are_built_once() -> None:
    g = _tiny()
    _trained_norms(g)
    norms = [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 9  # conditioner 4, dense 2, transposed convolutions 3
    before = {k: v.clone() for k, v in g.state_dict().items()}
    with torch.no_grad():
        a = g(*_inputs(g))
        b = g(*_inputs(g))
    # No layer is created in forward (the port's bug made a fresh, untrained one each call):
    # the same modules, the same weights, the learnt statistics used, the same output.
    assert [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)] == norms
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    assert torch.equal(a, b)
    for m in norms:  # statistics that were not the defaults of a new layer decide the output
        m.reset_running_stats()
    with torch.no_grad():
        assert (g(*_inputs(g)) - a).abs().max() > 1e-3


def test_discriminator_shapes_and_minibatch_features() -> None:
    from antiphon.models.midinet import MidiNetDiscriminator

    g = _tiny()
    d = MidiNetDiscriminator(g.config).eval()
    bars = torch.softmax(torch.randn(5, STEPS, g.config.width), -1)
    logit, feats = d(bars, torch.zeros(5, 14))
    assert logit.shape == (5,) and feats.shape[0] == 5


@pytest.fixture(scope="module")
def midinet_onnx(tmp_path_factory) -> Path:
    from antiphon.models.notes_train import NOTE_GRID
    from tests.checkpoints import export_verified, save_checkpoint

    g = _tiny(3)
    _trained_norms(g)
    folder = tmp_path_factory.mktemp("midinet")
    ckpt = save_checkpoint(folder / "ckpt.pt", "midinet", g, grid=NOTE_GRID.to_dict())
    return export_verified(ckpt, folder / "midinet.onnx")[0]


def played_ticks(played: list[tuple[int, int, int]]) -> list:
    """Closed ticks of (start, end, pitch) notes at tpq 8, as the daemon hears them."""
    from antiphon.models.midi.notes import Grid, RawEvent, event_ticks

    events = [RawEvent(a / 8, "on", 0, p, 90) for a, _, p in played]
    events += [RawEvent(b / 8, "off", 0, p) for _, b, p in played]
    events.sort(key=lambda e: (e.beat, e.kind == "on"))
    return event_ticks(events, Grid(tpq=8))


def _answer(path: Path, seed: int, played: list[tuple[int, int, int]], bars: int = 2) -> list:
    from antiphon.live.engine import open_voice
    from antiphon.live.sampling import Sampler, Sampling
    from antiphon.live.session import ModelFile

    voice = open_voice(ModelFile.open(path))
    state = voice.observe(voice.empty(), played_ticks(played))
    end = 32
    steps = voice.plan(
        state, [], start_tick=end, until_tick=end + bars * 32, sampler=Sampler(Sampling(seed=seed))
    )
    return [e for s in steps for e in s.events]


def test_voice_seed_gives_the_same_bars_and_conditions_follow_the_player(midinet_onnx) -> None:
    from antiphon.live.midinet_voice import MidiNetVoice
    from antiphon.live.session import ModelFile

    c_bar = [(0, 8, 72), (8, 16, 76), (16, 24, 79), (24, 32, 76), (0, 32, 48), (0, 32, 52)]
    a = _answer(midinet_onnx, 5, c_bar)
    assert a == _answer(midinet_onnx, 5, c_bar)
    assert a != _answer(midinet_onnx, 6, c_bar)
    ons = [e for e in a if e.kind == "on"]
    assert ons and ons[0].tick == 32  # the first step always sounds
    assert len([e for e in a if e.kind == "off"]) == len(ons)
    assert all(32 <= e.tick <= 96 for e in a)

    voice = MidiNetVoice(ModelFile.open(midinet_onnx))
    prev, chords = voice.conditions(voice.observe(voice.empty(), played_ticks(c_bar)), 32)
    # The player's last bar is the condition (folded into the 12 keys from 60: 72 -> key 0).
    assert prev[:4, 0].all() and prev[4:8, 4].all() and prev[8:12, 7].all()
    assert [v.tolist() for v in chords] == [chord_vector(C_MAJOR).tolist()]


def test_voice_answer_follows_the_chord_played(midinet_onnx) -> None:
    melody = [(0, 8, 72), (8, 16, 76), (16, 24, 79), (24, 32, 76)]
    c_major = _answer(midinet_onnx, 5, [*melody, (0, 32, 48), (0, 32, 52)])
    a_minor = _answer(midinet_onnx, 5, [*melody, (0, 32, 45), (0, 32, 48)])
    assert c_major != a_minor  # same seed and melody, another chord


def test_training_resumes_exactly_and_writes_the_gan_log(synth_corpus, tmp_path) -> None:
    import json

    from antiphon.models.train import load_checkpoint, train
    from tests.checkpoints import tiny_training

    model = {"base": 8, "dense": 16, "cond_channels": 4, "d_dense": 16, "noise": 8}
    kw = {"arch": "midinet", "eval_every": 3, "transpose": 2, "model": model}
    straight = train(tiny_training(synth_corpus, tmp_path / "a", 6, **kw), progress=False)
    train(tiny_training(synth_corpus, tmp_path / "b", 3, **kw), progress=False)
    resumed = train(
        tiny_training(synth_corpus, tmp_path / "b", 6, **kw), resume=True, progress=False
    )
    a, b = (load_checkpoint(r["checkpoint"]) for r in (straight, resumed))
    for part in ("model", "discriminator"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    log = json.loads((tmp_path / "a" / "gan-log.json").read_text())
    assert [r["step"] for r in log["rows"]] == [3, 6]
    assert all(r["d_loss"] > 0 and 0 < r["distinct_bars"] <= 1 for r in log["rows"])
    assert log["data_diversity"]["samples"] == 64
    assert (tmp_path / "a" / "gan-training.png").is_file()
    assert straight["seconds_per_step"] > 0 and straight["diversity"]["bars"] == 64
