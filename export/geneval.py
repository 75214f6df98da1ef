"""``antiphon eval`` for the latent families, through onnxruntime: MusicVAE's reconstruction
and MuseGAN's metrics, each beside the training data's own figures.

- ``--reconstruction DATA --model vae.onnx``: every valid phrase of ``DATA`` (read as
  training reads it) encoded, a latent drawn from the posterior, and the phrase decoded
  teacher-forced (each event from the true ones before it) and sampled freely at softmax
  temperature 1 — the two accuracies of MusicVAE's Table 1 — and the KL to the prior in
  bits per phrase.
- ``--multitrack DATA --model musegan.onnx``: MuseGAN's metrics (``models.rollmetrics``) of
  ``samples`` phrases generated from scratch, of the same number accompanying the valid
  split's given track, and of valid phrases themselves, with the diversity of each set
  (``models.diversity``): mode collapse shows as far fewer distinct bars than the data's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from antiphon.errors import UserError
from antiphon.live.musegan_voice import MuseGANStepper
from antiphon.live.sampling import Sampler, Sampling
from antiphon.live.session import ModelFile
from antiphon.live.vae_voice import VAEStepper
from antiphon.models.corpus import resolve_corpus
from antiphon.models.dataset import cache_root
from antiphon.models.diversity import diversity
from antiphon.models.rollmetrics import (
    comparison_table,
    metrics_table,
    paper_comparison,
    roll_metrics,
)

TRACK_NAMES = ["S", "A", "T", "B"]


def _open(model: str | Path, family: str, provider: str) -> ModelFile:
    mf = ModelFile.open(model, provider=provider)
    if mf.info.family != family:
        raise UserError(f"{model}: a {mf.info.family} model; this measure is for {family}")
    return mf


def evaluate_reconstruction(
    data: str, model: str | Path, *, limit: int | None = None, seed: int = 0, provider: str = "auto"
) -> dict:
    from antiphon.models.musicvae import MusicVAEConfig
    from antiphon.models.vae_train import read_phrases

    mf = _open(model, "musicvae", provider)
    config = MusicVAEConfig.from_dict(mf.info.config)
    corpus = resolve_corpus(data, cache_dir=cache_root(), progress=False)
    phrases = read_phrases(corpus, config, progress=False).valid[:limit]
    if not len(phrases):
        raise UserError(f"{data}: no valid phrases of {config.bars} bars to reconstruct")
    stepper = VAEStepper(mf.run, mf.info.signature, mf.info.config)
    rng = np.random.default_rng(seed)
    sampler = Sampler(Sampling(temperature=1.0, top_p=1.0, seed=seed))
    forced = sampled = kl = 0.0
    for x in phrases:
        mu, sigma = stepper.encode(x.tolist())
        z = (mu + sigma * rng.standard_normal(mu.shape)).astype(np.float32)
        forced += float((stepper.teacher_forced(x.tolist(), z).argmax(-1) == x).sum())
        decoded = np.asarray(list(stepper.decode(z, lambda logits, s: sampler(logits))))
        sampled += float((decoded == x).sum())
        kl += float((0.5 * (mu**2 + sigma**2 - 1) - np.log(sigma)).sum())
    n = len(phrases) * config.steps
    return {
        "model": str(model),
        "data": data,
        "phrases": len(phrases),
        "teacher_forced_accuracy": forced / n,
        "sampled_accuracy": sampled / n,
        "kl_bits": kl / len(phrases) / math.log(2),
        # Roberts et al. 2018, Table 1, 2-bar melody (their corpus: 1.5 M MIDI files)
        "published_2bar_melody": {"teacher_forced_accuracy": 0.986, "sampled_accuracy": 0.951},
    }


def evaluate_multitrack(
    data: str, model: str | Path, *, samples: int = 64, seed: int = 0, provider: str = "auto"
) -> dict:
    from antiphon.models.musegan import MuseGANConfig
    from antiphon.models.musegan_train import read_phrases

    mf = _open(model, "musegan", provider)
    c = MuseGANConfig.from_dict(mf.info.config)
    corpus = resolve_corpus(data, cache_dir=cache_root(), progress=False)
    phrases = read_phrases(corpus, c, progress=False)
    ref = phrases.valid if len(phrases.valid) else phrases.train
    if not len(ref):
        raise UserError(f"{data}: no phrases of {c.bars} bars of {c.tracks} voices")
    ref = ref[np.random.default_rng(seed).permutation(len(ref))[:samples]].astype(bool)
    stepper = MuseGANStepper(mf.run, mf.info.config)
    rng = np.random.default_rng(seed + 1)
    scratch = np.stack([stepper.keys(stepper.phrase(rng)) for _ in range(samples)])
    around = np.stack([stepper.keys(stepper.phrase(rng, r[c.accompany_track])) for r in ref])
    around[:, c.accompany_track] = ref[:, c.accompany_track]
    sets = {
        "training data (valid)": ref,
        "generated": scratch,
        "accompanying the data's top voice": around,
    }
    metrics = {k: roll_metrics(v, c.steps_per_beat, c.pitch_lo) for k, v in sets.items()}
    flat = lambda r: r.transpose(0, 2, 3, 1, 4).reshape(len(r), c.bars * c.steps, -1)  # noqa: E731
    names = (TRACK_NAMES + [str(i) for i in range(4, c.tracks)])[: c.tracks]
    paper = paper_comparison(*metrics.values(), given=c.accompany_track)
    return {
        "model": str(model),
        "data": data,
        "metrics": {k: m.to_dict() for k, m in metrics.items()},
        "diversity": {k: diversity(flat(v), c.steps).to_dict() for k, v in sets.items()},
        "paper": paper,
        "table": metrics_table(metrics, names) + "\n\n" + comparison_table(paper),
    }
