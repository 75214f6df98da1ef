"""C-RNN-GAN: notes as features, the generator's feedback, the exported step and its voice
(warmed on the player's notes, a seed reproducing an answer), and ``antiphon eval --gan``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from antiphon.models.midi.notes import Note

torch = pytest.importorskip("torch")


def _tiny(seed: int = 0):  # type: ignore[no-untyped-def]
    from antiphon.models.crnngan import CRNNGANConfig, CRNNGenerator

    torch.manual_seed(seed)
    return CRNNGenerator(CRNNGANConfig(hidden=16, d_hidden=8, noise=4, block_size=8)).eval()


def test_read_notes_features_in_beats() -> None:
    from antiphon.models.crnngan_train import read_notes

    notes = [Note(8, 16, 64, 80), Note(0, 4, 60, 100), Note(0, 8, 67, 90)]
    rows = read_notes(notes, tpq=8)
    # (start, pitch) order: 60 and 67 at 0, 64 a beat later
    assert rows.tolist() == [[0.0, 0.5, 60, 100], [0.0, 1.0, 67, 90], [1.0, 1.0, 64, 80]]


def test_generate_feeds_back_its_own_output() -> None:
    g = _tiny()
    noise = torch.randn(2, 5, 4)
    with torch.no_grad():
        free = g.generate(noise)
        # Teacher-forcing the generator on its own free-running output reproduces it.
        forced = g.teacher_forced(noise, free)
    assert free.shape == (2, 5, 4)
    assert torch.allclose(free, forced, atol=1e-6)


def test_discriminator_scores_every_note_with_minibatch_features() -> None:
    from antiphon.models.crnngan import CRNNDiscriminator

    g = _tiny()
    c = g.config
    c.minibatch_kernels = 3
    d = CRNNDiscriminator(c)
    logits, feats = d(torch.randn(4, 6, 4))
    assert logits.shape == (4, 6) and feats.shape == (4, 6, 2 * c.d_hidden)


def test_notes_of_features_round_as_played() -> None:
    from antiphon.models.crnngan_train import notes_of_features

    c = _tiny().config
    f = np.asarray([[0.0, 1.0, 0.0, 0.5], [0.5, 9.0, 1.0, 0.5], [-1.0, 0.01, -0.5, 0.5]])
    # steps clamp at 0, lengths at max_beats (4) and to at least a tick; pitch 64 + 12 x
    assert notes_of_features(f, c, 4) == [(0, 4, 64), (2, 18, 76), (2, 3, 58)]


@pytest.fixture(scope="module")
def crnngan_onnx(tmp_path_factory) -> Path:
    from antiphon.models.notes_train import NOTE_GRID
    from tests.checkpoints import export_verified, save_checkpoint

    folder = tmp_path_factory.mktemp("crnngan")
    ckpt = save_checkpoint(folder / "ckpt.pt", "crnn-gan", _tiny(2), grid=NOTE_GRID.to_dict())
    return export_verified(ckpt, folder / "crnn-gan.onnx")[0]


def _heard(path: Path, phrase: list[int]):  # type: ignore[no-untyped-def]
    from antiphon.live.engine import open_voice
    from antiphon.live.session import ModelFile
    from antiphon.models.midi.notes import Grid, RawEvent, event_ticks

    voice = open_voice(ModelFile.open(path))
    events = []
    for i, p in enumerate(phrase):
        events += [RawEvent(i / 2, "on", 0, p, 90), RawEvent(i / 2 + 0.4, "off", 0, p)]
    return voice.observe(voice.empty(), event_ticks(events, Grid(tpq=8)))


def _answer(path: Path, phrase: list[int], seed: int | None, temperature: float = 1.0) -> list:
    from antiphon.live.engine import open_voice
    from antiphon.live.sampling import Sampler, Sampling
    from antiphon.live.session import ModelFile
    from antiphon.models.midi.notes import Grid, RawEvent, event_ticks

    voice = open_voice(ModelFile.open(path))
    events = []
    for i, p in enumerate(phrase):
        events += [RawEvent(i / 2, "on", 0, p, 90), RawEvent(i / 2 + 0.4, "off", 0, p)]
    state = voice.observe(voice.empty(), event_ticks(events, Grid(tpq=8)))
    end = len(phrase) * 4
    sampler = Sampler(Sampling(temperature=temperature, seed=seed))
    return [
        e
        for s in voice.plan(state, [], start_tick=end, until_tick=end + 64, sampler=sampler)
        for e in s.events
    ]


def test_voice_is_warmed_on_the_player_and_seeded(crnngan_onnx) -> None:
    up, down = [60, 62, 64, 65, 67], [79, 76, 72, 67, 64]
    a = _answer(crnngan_onnx, up, 1)
    assert a == _answer(crnngan_onnx, up, 1)  # a seed reproduces the answer
    assert a != _answer(crnngan_onnx, up, 2)  # another seed, other noise
    # The state heard the phrase: with no noise at all the answer is the phrase's alone.
    assert _answer(crnngan_onnx, up, 1, 0.0) == _answer(crnngan_onnx, up, 2, 0.0)
    heard = [_heard(crnngan_onnx, phrase) for phrase in (up, down)]
    assert np.abs(heard[0].arrays["past_h"] - heard[1].arrays["past_h"]).max() > 1e-4
    # The last note is kept back: the answer's first step is fed it.
    assert heard[0].prediction[2] == pytest.approx((67 - 64) / 12)
    ons = [e for e in a if e.kind == "on"]
    assert ons and ons[0].tick == 20  # the first note at once
    assert len([e for e in a if e.kind == "off"]) == len(ons)
    assert all(20 <= e.tick <= 84 for e in a)


def test_eval_gan_sets_side_by_side(crnngan_onnx, synth_corpus) -> None:
    from antiphon.export.gan_eval import evaluate_gan

    ev = evaluate_gan(crnngan_onnx, str(synth_corpus), samples=6, bars=2, seed=3)
    again = evaluate_gan(crnngan_onnx, str(synth_corpus), samples=6, bars=2, seed=3)
    assert ev.to_dict() == again.to_dict()
    assert ev.samples == 6 and ev.generated_diversity.samples == 6
    assert ev.data_diversity.bars == 12 and ev.notes["data"] > 0 and ev.notes["generated"] > 0
    # The synthetic pieces are scale melodies over triads: their own measures say so.
    assert ev.data["scale_consistency"].mean > 0.9 and ev.data["polyphony"].mean > 0.3
    table = ev.table()
    assert "generated" in table and "training data" in table and "tone_span" in table


def test_cli_eval_gan_prints_both_sets(crnngan_onnx, synth_corpus, tmp_path, capsys) -> None:
    import json

    from antiphon.cli import main

    out = tmp_path / "gan.json"
    argv = ["eval", "--gan", str(crnngan_onnx), "--gan-data", str(synth_corpus)]
    assert main([*argv, "--gan-samples", "3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "scale_consistency" in printed and "training data" in printed
    assert json.loads(out.read_text())["samples"] == 3
    assert main([*argv, "--gan-samples", "1"]) != 0  # one sample has no pairs: one line
    assert "--gan-samples" in capsys.readouterr().err
