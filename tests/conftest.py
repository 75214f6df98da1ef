"""Shared fixtures: real MIDI files, a tiny random-initialised model, its verified export."""

from __future__ import annotations

import os
import random
from pathlib import Path

import mido
import pytest

from tests.live.conftest import jack_server  # noqa: F401  (a session fixture for every folder)

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests never read or write the user's corpus/token cache.
    os.environ["ANTIPHON_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def chorale() -> Path:
    """Bach, BWV 66.6, rendered to MIDI from music21's corpus (four voices, four tracks)."""
    return DATA / "bwv66.6.mid"


@pytest.fixture(scope="session")
def palestrina() -> Path:
    return DATA / "palestrina-agnus-01.mid"


def write_expressive_midi(path: Path, seed: int = 0, events: int = 300) -> Path:
    """A deliberately messy performance: sustain pedal, jittered timing, overlapping
    same-pitch notes across channels, out-of-range pitches and a drum channel."""
    rng = random.Random(seed)
    mid = mido.MidiFile(ticks_per_beat=480)
    for ch in range(2):
        track = mido.MidiTrack()
        mid.tracks.append(track)
        timed = []
        t = 0
        for _ in range(events):
            t += rng.choice([0, 0, 13, 60, 120, 240, 241, 479, 1000])
            pitch = (
                rng.choice([60, 62, 64, 65, 67, 20, 110, 60]) if ch == 0 else rng.randint(40, 90)
            )
            length = rng.choice([1, 5, 30, 120, 480, 2000])
            timed.append(
                (t, mido.Message("note_on", channel=ch, note=pitch, velocity=rng.randint(1, 127)))
            )
            timed.append((t + length, mido.Message("note_off", channel=ch, note=pitch)))
            if ch == 0 and rng.random() < 0.1:
                value = rng.choice([0, 127, 64, 63])
                timed.append(
                    (t, mido.Message("control_change", channel=ch, control=64, value=value))
                )
        if ch == 1:
            timed.append((0, mido.Message("note_on", channel=9, note=36, velocity=100)))
        timed.sort(key=lambda e: e[0])
        last = 0
        for at, msg in timed:
            track.append(msg.copy(time=at - last))
            last = at
    mid.save(path)
    return path


@pytest.fixture(scope="session")
def expressive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_expressive_midi(tmp_path_factory.mktemp("midi") / "expressive.mid")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised, tiny transformer saved as a real checkpoint."""
    torch = pytest.importorskip("torch")
    from antiphon.models.midi.tokenizer import Tokenizer
    from antiphon.models.registry import family
    from tests.checkpoints import save_checkpoint

    tok = Tokenizer.create()
    torch.manual_seed(0)
    model = family("transformer").build(
        {"vocab_size": len(tok), "n_layer": 2, "n_embd": 32, "n_head": 2, "block_size": 96}
    )
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    save_checkpoint(path, "transformer", model, tokenizer=tok.to_params())
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path) -> Path:
    from tests.checkpoints import export_verified

    return export_verified(tiny_checkpoint, tiny_checkpoint.parent / "tiny.onnx")[0]


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.synth import write_corpus

    return write_corpus(tmp_path_factory.mktemp("synth") / "corpus")


@pytest.fixture(scope="session")
def trained_run(synth_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny transformer really trained (a few hundred steps) on the synthetic corpus:
    it plays notes in time, which the live end-to-end tests need."""
    pytest.importorskip("torch")
    from antiphon.models.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = TrainConfig(
        data=str(synth_corpus),
        out=str(out),
        steps=300,
        batch_size=8,
        block_size=128,
        lr=3e-3,
        warmup=30,
        eval_every=150,
        eval_pieces=4,
        transpose=2,
        model={"n_layer": 2, "n_embd": 64, "n_head": 2, "dropout": 0.0},
    )
    return train(cfg, progress=False)


@pytest.fixture(scope="session")
def trained_onnx(trained_run: dict) -> Path:
    from tests.checkpoints import export_verified

    ckpt = Path(trained_run["checkpoint"])
    return export_verified(ckpt, ckpt.parent / "tiny-trained.onnx")[0]


@pytest.fixture(scope="session")
def motif_vae(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny MusicVAE trained on eight motifs (``tests.vae_motifs``): (.onnx, metrics)."""
    pytest.importorskip("torch")
    from tests.vae_motifs import train_motif_vae

    return train_motif_vae(tmp_path_factory.mktemp("motifs"))
