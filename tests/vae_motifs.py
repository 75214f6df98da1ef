"""A tiny MusicVAE trained on eight two-bar motifs: small enough to learn in seconds,
distinct enough that a round trip through the latent can be checked exactly."""

from __future__ import annotations

from pathlib import Path

import mido

# Eight two-bar motifs, (pitch or None for a rest, sixteenths); one per file, played twice.
MOTIFS = [
    [(60, 4), (62, 4), (64, 4), (65, 4), (67, 8), (65, 4), (64, 4)],
    [(72, 2), (71, 2), (69, 2), (67, 2), (65, 8), (None, 4), (64, 4), (62, 8)],
    [(55, 8), (59, 8), (62, 8), (67, 8)],
    [(64, 2)] * 8 + [(67, 4), (65, 4), (64, 4), (62, 4)],
    [(57, 4), (None, 4), (57, 4), (60, 4), (64, 12), (None, 4)],
    [(69, 6), (67, 2), (65, 8), (64, 6), (62, 2), (60, 8)],
    [(48, 4), (55, 4), (60, 4), (55, 4), (48, 4), (55, 4), (60, 8)],
    [(76, 2), (74, 2), (72, 4), (None, 8), (71, 2), (72, 2), (74, 4), (None, 8)],
]


def write_motif_corpus(folder: Path, files: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tpb, step = 480, 120  # a sixteenth
    for i in range(files):
        track = mido.MidiTrack()
        rest = 0
        for _ in range(2):
            for pitch, length in MOTIFS[i % len(MOTIFS)]:
                if pitch is None:
                    rest += length * step
                    continue
                track.append(mido.Message("note_on", note=pitch, velocity=80, time=rest))
                track.append(mido.Message("note_off", note=pitch, time=length * step))
                rest = 0
        mid = mido.MidiFile(ticks_per_beat=tpb)
        mid.tracks.append(track)
        mid.save(folder / f"motif-{i:02d}.mid")
    return folder


def train_motif_vae(root: Path) -> tuple[Path, dict]:
    """(the exported, verified .onnx, the training's metrics); the corpus is ``root/corpus``
    (600 steps, ~15 s on one idle core)."""
    from antiphon.models.train import train
    from tests.checkpoints import export_verified, tiny_training

    corpus = write_motif_corpus(root / "corpus")
    cfg = tiny_training(
        corpus, root / "run", 600, arch="musicvae", batch_size=32, lr=1e-2, min_lr=1e-3,
        warmup=10, eval_every=10_000, transpose=0,
        model={"embedding": 16, "encoder_hidden": 48, "z_size": 16, "decoder_hidden": 64,
               "decoder_layers": 1, "max_beta": 0.02, "beta_rate": 0.99},
    )  # fmt: skip
    result = train(cfg, progress=False)
    path, _ = export_verified(Path(result["checkpoint"]), root / "motifs.onnx")
    return path, result
