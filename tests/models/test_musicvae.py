"""MusicVAE: the melody reading, the loss's schedule and free bits, the conductor's export,
and the encode -> decode round trip of a trained tiny model through onnxruntime."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from antiphon.models.midi.melody import (
    FIRST_PITCH,
    NO_EVENT,
    NOTE_OFF,
    HeardNote,
    MelodyRange,
    melody_notes,
    skyline,
)
from tests.vae_motifs import MOTIFS

RANGE = MelodyRange(21, 88)


# -- the melody reading (pure) -------------------------------------------------------------
def test_skyline_keeps_the_top_voice_and_marks_ends_and_holds() -> None:
    notes = [
        HeardNote(0, 72, 4),  # soprano: a quarter
        HeardNote(0, 60, 8),  # a lower voice under it: not the melody
        HeardNote(4, 74, 6),  # soprano, then a rest
        HeardNote(5, 55, 8),  # a lower voice entering under the soprano: ignored
        HeardNote(8, 48, 10),  # the soprano is silent now: the highest note struck leads
    ]
    ev = skyline(notes, 0, 12, RANGE)
    assert ev[0] == RANGE.event(72) and ev[1:4].tolist() == [NO_EVENT] * 3
    assert ev[4] == RANGE.event(74) and ev[5] == NO_EVENT
    assert ev[6] == NOTE_OFF and ev[7] == NO_EVENT  # 74 ends; the 55 under it is not melody
    assert ev[8] == RANGE.event(48) and ev[10] == NOTE_OFF
    assert melody_notes(ev, RANGE) == [(0, 4, 72), (4, 6, 74), (8, 10, 48)]


def test_skyline_folds_pitches_into_the_range_and_starts_phrases_at_their_window() -> None:
    small = MelodyRange(60, 12)
    ev = skyline([HeardNote(-2, 67, 3), HeardNote(1, 84, 2), HeardNote(2, 50, 4)], 0, 4, small)
    # the note begun before the window is not struck in it; 84 and 50 fold to 60 and 62
    assert ev.tolist() == [NO_EVENT, small.event(84), small.event(50), NO_EVENT]
    assert small.pitch(small.event(84)) == 60 and small.pitch(small.event(50)) == 62
    assert all(FIRST_PITCH <= e < small.classes for e in ev if e >= FIRST_PITCH)


# -- the loss ------------------------------------------------------------------------------
def test_beta_schedule_and_free_bits() -> None:
    torch = pytest.importorskip("torch")
    from antiphon.models.musicvae import MusicVAE, MusicVAEConfig, beta_at

    c = MusicVAEConfig(max_beta=0.5, beta_rate=0.9)
    assert beta_at(0, c) == 0.0 and beta_at(10, c) == pytest.approx(0.5 * (1 - 0.9**10))
    assert beta_at(10_000, c) == pytest.approx(0.5)
    torch.manual_seed(0)
    small = dict(embedding=8, encoder_hidden=16, z_size=8, decoder_hidden=16, decoder_layers=1)
    x = torch.randint(0, c.classes, (4, c.steps))
    noise = torch.randn(4, 8)
    plain = MusicVAE(MusicVAEConfig(**small, free_bits=0.0))
    free = MusicVAE(MusicVAEConfig(**small, free_bits=1000.0))
    free.load_state_dict(plain.state_dict())
    a, b = plain.loss_terms(x, noise, 1.0), free.loss_terms(x, noise, 1.0)
    assert 0 < float(a["kl"].detach()) / math.log(2) < 1000
    # under the free bits the KL costs nothing: the loss is the reconstruction alone
    assert float(b["loss"].detach()) == pytest.approx(float(b["nll"].detach()))
    whole = float((a["nll"] + a["kl"]).detach())
    assert float(a["loss"].detach()) == pytest.approx(whole, rel=1e-5)


# -- the conductor -------------------------------------------------------------------------
def test_hierarchical_conductor_exports_and_verifies(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from antiphon.live.session import ModelFile
    from antiphon.live.vae_voice import VAEStepper
    from antiphon.models.midi.melody import MELODY_GRID
    from antiphon.models.registry import family
    from tests.checkpoints import export_verified, save_checkpoint

    torch.manual_seed(0)
    cfg = dict(bars=4, bars_per_section=1, embedding=8, encoder_hidden=16, z_size=8,
               decoder_hidden=16, decoder_layers=1, conductor_hidden=16, condition=12)  # fmt: skip
    model = family("musicvae").build(cfg)
    assert model.config.sections == 4 and model.config.section_steps == 16
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", "musicvae", model, grid=MELODY_GRID.to_dict())
    path, _ = export_verified(ckpt, tmp_path / "hier.onnx")
    mf = ModelFile.open(path)
    assert mf.info.verification["greedy_identical"] is True
    stepper = VAEStepper(mf.run, mf.info.signature, mf.info.config)
    z = np.random.default_rng(0).standard_normal(8).astype(np.float32)
    assert stepper.conduct(z).shape == (4, 12)
    assert len(list(stepper.decode(z, lambda logits, s: int(np.argmax(logits))))) == 64
    # the section vectors reach the decoder: another section's vector, another state
    a, b = stepper.begin(stepper.conduct(z)[0]), stepper.begin(stepper.conduct(z)[1])
    assert not np.allclose(a["past_h"], b["past_h"])


# -- a trained tiny model ------------------------------------------------------------------
def test_training_reports_reconstruction_and_kl(motif_vae) -> None:
    _, result = motif_vae
    assert 0.0 <= result["valid_sampled_accuracy"] <= result["valid_teacher_forced_accuracy"] <= 1
    assert result["valid_teacher_forced_accuracy"] > 0.9  # eight motifs, learnt
    assert result["valid_kl_bits"] > 1.0  # the latent carries the phrase
    assert result["seconds_per_step"] > 0


def test_encode_decode_round_trip(motif_vae) -> None:
    """Each motif, encoded to its posterior mean and decoded greedily through onnxruntime,
    comes back; decoded from another motif's latent, it does not."""
    from antiphon.live.session import ModelFile
    from antiphon.live.vae_voice import VAEStepper
    from antiphon.models.midi.melody import MELODY_GRID
    from antiphon.models.midi.notes import read_performance

    path, _ = motif_vae
    mf = ModelFile.open(path)
    stepper = VAEStepper(mf.run, mf.info.signature, mf.info.config)
    corpus = path.parent / "corpus"
    phrases = [
        skyline(read_performance(corpus / f"motif-{i:02d}.mid", MELODY_GRID).notes, 0, 32, RANGE)
        for i in range(len(MOTIFS))
    ]
    own, other = [], []
    for i, x in enumerate(phrases):
        back = np.asarray(stepper.greedy(x.tolist()))
        own.append(float((back == x).mean()))
        mu = stepper.encode(phrases[(i + 1) % len(phrases)].tolist())[0]
        theirs = np.asarray(list(stepper.decode(mu, lambda logits, s: int(np.argmax(logits)))))
        other.append(float((theirs == x).mean()))
    assert np.mean(own) >= 0.9 and min(own) >= 0.75, own
    assert np.mean(own) > np.mean(other) + 0.2, (own, other)


def test_eval_reconstruction_through_onnxruntime(motif_vae, capsys) -> None:
    from antiphon.cli import main
    from antiphon.export.geneval import evaluate_reconstruction

    path, result = motif_vae
    corpus = str(path.parent / "corpus")
    r = evaluate_reconstruction(corpus, path)
    assert r["phrases"] == result["valid_phrases"]
    # the figures torch gave at the end of training, from other latent draws
    assert abs(r["teacher_forced_accuracy"] - result["valid_teacher_forced_accuracy"]) < 0.05
    assert r["sampled_accuracy"] <= r["teacher_forced_accuracy"] and r["kl_bits"] > 1.0
    assert main(["eval", "--reconstruction", corpus, "--model", str(path)]) == 0
    assert '"teacher_forced_accuracy"' in capsys.readouterr().out
    assert main(["eval", "--multitrack", corpus, "--model", str(path)]) == 2
    assert "a musicvae model; this measure is for musegan" in capsys.readouterr().err
