"""Training MuseGAN: phrases of four voices, WGAN-GP, the log of losses and diversity.

Every file of the corpus is read as ``tracks`` voices (``models.midi.multitrack``) on a grid
of ``steps_per_beat`` steps, cut into phrases of ``bars`` bars starting on every bar, and
transposed at random. Each step: ``critic_steps`` critic updates (the WGAN loss plus the
gradient penalty) and one generator update; a share ``accompany_rate`` of the batches is
conditioned on the real given track, which then replaces the generated one before the
critic sees it. Adam at the paper's betas (0.5, 0.9), the shared warmup and cosine schedule.

Every ``eval_every`` steps the D and G losses and the diversity of 32 fixed-seed phrases
(``models.diversity``, beside the training data's) go to ``OUT/gan-log.json`` and its
plot; at the end MuseGAN's metrics of 64 generated phrases and of 64 training phrases
(``models.rollmetrics``) go to ``metrics.json``.

Under torchrun every process draws the same global batches, latents and penalty points and
keeps its rows; the generator's BatchNorm reads the whole batch (``models.wholebatch``), each
player's gradients are averaged over the processes, and rank 0 writes. The critic judges each
phrase alone (WGAN-GP has no BatchNorm in it), so its penalty is a mean over rows like its loss.
"""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from antiphon.atomic import atomic_file, write_text
from antiphon.errors import UserError
from antiphon.models.corpus import Corpus, resolve_corpus
from antiphon.models.dataset import cache_root, corpus_cache_key, progress_interval
from antiphon.models.distributed import Runtime, Throughput
from antiphon.models.diversity import diversity
from antiphon.models.gan import PairOptimizer
from antiphon.models.gan_log import GanLog
from antiphon.models.midi.multitrack import keys_down, note_grid, phrase_rolls, voices
from antiphon.models.midi.notes import Grid
from antiphon.models.musegan import (
    Critic,
    MuseGAN,
    MuseGANConfig,
    binarized,
    gradient_penalty,
)
from antiphon.models.registry import family
from antiphon.models.rollmetrics import roll_metrics
from antiphon.models.train import (
    CHECKPOINT_FORMAT,
    TrainConfig,
    lr_at,
    resume_checkpoint,
    resumed_config,
    run_on_runtime,
    save_atomic,
    training_bar,
    versions,
)
from antiphon.models.wholebatch import whole_batch

_CACHE_FORMAT = 1
SAMPLES = 32  # phrases per diversity point
METRIC_SAMPLES = 64


@dataclass
class Phrases:
    train: np.ndarray  # (N, tracks, bars, steps, pitches) uint8
    valid: np.ndarray
    summary: dict


def _piece(args: tuple[str, dict]) -> np.ndarray | None:
    path, c = args
    try:
        parts = voices(path, Grid(tpq=c["steps_per_beat"]), c["tracks"])
    except Exception:  # an unreadable file is skipped and counted, never fatal
        return None
    bar = c["beats_per_bar"] * c["steps_per_beat"]
    return phrase_rolls(parts, c["bars"], bar, c["pitch_lo"], c["n_pitches"])


def read_phrases(corpus: Corpus, config: Any, *, progress: bool = True) -> Phrases:
    keys = ("tracks", "bars", "beats_per_bar", "steps_per_beat", "pitch_lo", "n_pitches")
    setting = {k: getattr(config, k) for k in keys}
    key = corpus_cache_key(corpus, f"multitrack/{_CACHE_FORMAT}", json.dumps(setting))
    cache = cache_root() / "multitrack" / f"phrases-{key}.npz"
    if cache.exists():
        z = np.load(cache)
        return Phrases(z["train"], z["valid"], json.loads(bytes(z["meta"]).decode()))
    from tqdm import tqdm

    splits, failed = {}, 0
    shape = (0, config.tracks, config.bars, config.steps, config.n_pitches)
    for split in ("train", "valid"):
        jobs = [(str(p), setting) for p in corpus.split(split)]
        bar = tqdm(total=len(jobs), desc=f"reading {split}", unit="file", disable=not progress,
                   mininterval=progress_interval())  # fmt: skip
        workers = min(os.cpu_count() or 1, 4)
        if len(jobs) >= 16 and workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                results = list(pool.map(_piece, jobs, chunksize=8))
        else:
            results = [_piece(j) for j in jobs]
        pieces = []
        for r in results:
            bar.update()
            if r is None:
                failed += 1
            elif len(r):
                pieces.append(r)
        bar.close()
        splits[split] = np.concatenate(pieces) if pieces else np.zeros(shape, dtype=np.uint8)
    summary = {**corpus.summary(), "unreadable": failed,
               "phrases": {k: len(v) for k, v in splits.items()}}  # fmt: skip
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(cache, what="multitrack cache") as f:
        np.savez(f, train=splits["train"], valid=splits["valid"],
                 meta=np.frombuffer(json.dumps(summary).encode(), dtype=np.uint8))  # fmt: skip
    return Phrases(splits["train"], splits["valid"], summary)


def transposed(batch: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each phrase moved by its shift along pitch where nothing falls off the range."""
    out = batch.copy()
    for i, k in enumerate(shifts):
        keys = np.flatnonzero(batch[i].any(axis=(0, 1, 2)))
        if k and keys.size and keys[0] + k >= 0 and keys[-1] + k < batch.shape[-1]:
            out[i] = np.roll(batch[i], int(k), axis=-1)
    return out


@torch.no_grad()
def generate(model: MuseGAN, n: int, seed: int, condition: np.ndarray | None = None) -> np.ndarray:
    """(n, tracks, bars, steps, pitches) bool phrases from seeded latents, keys drawn as
    the voice draws them at temperature 0 (``keys_down``)."""
    was = model.training
    model.eval()
    c = model.config
    g = torch.Generator().manual_seed(seed)
    cond = torch.zeros(n, c.bars, c.steps, c.n_pitches)
    given = torch.zeros(n)
    if condition is not None:
        cond, given = torch.from_numpy(condition.astype(np.float32)), torch.ones(n)
    probs = model(*model.latents(n, g), cond, given)
    model.train(was)
    return keys_down(probs.numpy(), c.monophonic)


def _flat(rolls: np.ndarray) -> np.ndarray:
    """(N, tracks, bars, steps, pitches) -> (N, bars * steps, tracks * pitches) for diversity."""
    N, T, bars, steps, P = rolls.shape
    return rolls.transpose(0, 2, 3, 1, 4).reshape(N, bars * steps, T * P)


def train_musegan(
    cfg: TrainConfig, *, resume: bool = False, progress: bool = True, log: Any = None
):
    say = log or (lambda msg: None)
    state = None
    if resume:
        state = resume_checkpoint(Path(cfg.out) / "ckpt.pt", say)
        cfg = resumed_config(state, cfg)
    return run_on_runtime(_train, cfg, state, say, progress)


def _train(cfg: TrainConfig, rt: Runtime, state: dict | None, say: Any, progress: bool) -> dict:
    out = Path(cfg.out)
    ckpt_path = out / "ckpt.pt"
    if state:
        say(f"resuming {ckpt_path} at step {state['step']}")
    torch.set_num_threads(cfg.threads or 1)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # A checkpoint written before newer options resumes as it was written.
    c = (
        MuseGANConfig.written(state["model_config"])
        if state
        else MuseGANConfig.from_dict(cfg.model)
    )
    with rt.main_first():  # rank 0 builds the caches, the others read them
        corpus = resolve_corpus(cfg.data, cache_dir=cache_root(), progress=progress)
        data = read_phrases(corpus, c, progress=progress)
    say(
        f"corpus {corpus.name}: {len(data.train):,} train / {len(data.valid):,} valid phrases "
        f"of {c.tracks} voices x {c.bars} bars, {data.summary['unreadable']} unreadable"
    )
    if len(data.train) == 0:
        raise UserError(f"{cfg.data}: no phrases of {c.bars} bars to learn from")
    if not c.note_steps_per_beat:
        c = replace(c, note_steps_per_beat=note_grid(data.train, c.steps_per_beat))
        say(f"the data's notes start and end on a grid of {c.note_steps_per_beat} a beat: "
            "the generator writes at it")  # fmt: skip
    model = family(cfg.arch).build(c.to_dict()).to(rt.device)
    critic = Critic(c).to(rt.device)
    betas = (0.5, 0.9)
    opt = PairOptimizer(
        torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=betas),
        torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=betas),
    )
    rng = np.random.default_rng(cfg.seed)
    step = 0
    # One loss scaler a player (enabled for fp16 only): each scales its own backward.
    scaler_g, scaler_d = rt.scaler(), rt.scaler()
    gan_log = GanLog(
        diversity(_flat(data.train[rng.permutation(len(data.train))[:SAMPLES]]), c.steps)
    )
    if state:
        model.load_state_dict(state["model"])
        critic.load_state_dict(state["critic"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        gan_log = GanLog.from_dict(state.get("gan_log"))
        for scaler, key in ((scaler_g, "scaler"), (scaler_d, "d_scaler")):
            if scaler.is_enabled() and state.get(key):
                scaler.load_state_dict(state[key])
    say(
        f"{cfg.arch}: {model.num_params():,} generator parameters, "
        f"{sum(p.numel() for p in critic.parameters()):,} in the critic, on {rt.describe()}"
    )

    mine = rt.rows(cfg.batch_size)  # this process's rows of every global batch
    rows = slice(mine.start, mine.stop)

    def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pick = rng.integers(0, len(data.train), cfg.batch_size)[rows]
        shifts = rng.integers(-cfg.transpose, cfg.transpose + 1, cfg.batch_size)[rows]
        real = torch.from_numpy(transposed(data.train[pick], shifts).astype(np.float32))
        given = (rng.random(cfg.batch_size) < c.accompany_rate).astype(np.float32)[rows]
        return rt.tensor(real), rt.tensor(given), rt.tensor(real[:, c.accompany_track])

    def fake_of(real: torch.Tensor, given: torch.Tensor, line: torch.Tensor) -> torch.Tensor:
        z = [rt.tensor(t[rows]) for t in model.latents(cfg.batch_size)]
        fake = binarized(model(*z, line * given.view(-1, 1, 1, 1), given), c.binarize, c.monophonic)
        # A conditioned phrase's given track is the real one, as the critic must judge
        # the other voices around it.
        mask = torch.zeros_like(fake)
        mask[:, c.accompany_track] = given.view(-1, 1, 1, 1)
        return fake * (1 - mask) + real * mask

    def save(metrics: dict | None = None) -> None:
        if rt.main:
            _save(metrics)
        rt.barrier()

    def _save(metrics: dict | None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        blob = {
            "format": CHECKPOINT_FORMAT,
            "family": cfg.arch,
            "model_config": c.to_dict(),
            "model": model.state_dict(),
            "critic": critic.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "train_config": cfg.to_dict(),
            "grid": Grid(tpq=c.steps_per_beat).to_dict(),
            "data": data.summary,
            "gan_log": gan_log.to_dict(),
            "metrics": metrics or {},
            "versions": versions(),
            "sampler_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "scaler": scaler_g.state_dict(),
            "d_scaler": scaler_d.state_dict(),
        }
        save_atomic(blob, ckpt_path)
        gan_log.write(out)

    t0 = time.perf_counter()
    first = step
    model.train()
    bar = training_bar(cfg.steps, step, progress)
    # phrases through the players a second: each critic update and the G update draw a batch
    rate = Throughput(cfg.batch_size * (c.critic_steps + 1), step)
    d_value = g_value = float("nan")
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with whole_batch(rt):
            for _ in range(c.critic_steps):
                real, given, line = batch()
                with torch.no_grad(), rt.autocast():
                    fake = fake_of(real, given, line)
                with rt.autocast():
                    d = critic(fake).float().mean() - critic(real).float().mean()
                a = rt.tensor(torch.rand(cfg.batch_size, *([1] * (real.dim() - 1)))[rows])
                gp = gradient_penalty(
                    critic, real, fake, a, autocast=rt.autocast, scale=scaler_d.get_scale()
                )
                loss = d + c.gp_weight * gp
                # no clipping: WGAN-GP's penalty is what bounds the critic
                rt.optimize(loss, opt.d, scaler_d, critic.parameters(), 0.0, average=True)
                d_value = rt.mean(loss)
            real, given, line = batch()
            with rt.autocast():
                g_loss = -critic(fake_of(real, given, line)).float().mean()
            rt.optimize(g_loss, opt.g, scaler_g, model.parameters(), 0.0, average=True)
            g_value = rt.mean(g_loss)
        step += 1
        bar.set_postfix(
            d=f"{d_value:.3f}", g=f"{g_value:.3f}", phrases_s=f"{rate(step):,.1f}", refresh=False
        )
        bar.update()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            samples = diversity(_flat(generate(model, SAMPLES, cfg.seed)), c.steps)
            row = gan_log.add(step, d_value, g_value, samples)
            (bar.write if progress else say)(
                f"step {step}: D {d_value:.3f}, G {g_value:.3f}, distinct bars "
                f"{row['distinct_bars']:.2f}, mean distance {row['mean_distance']:.2f}"
            )
            save()
    bar.close()
    seconds = time.perf_counter() - t0
    ref = data.valid if len(data.valid) else data.train
    ref = ref[np.random.default_rng(0).permutation(len(ref))[:METRIC_SAMPLES]]
    ours = generate(model, METRIC_SAMPLES, cfg.seed + 1)
    around = generate(model, len(ref), cfg.seed + 2, ref[:, c.accompany_track])
    around[:, c.accompany_track] = ref[:, c.accompany_track]
    metrics = {
        "musegan_metrics": {
            "data": roll_metrics(ref, c.steps_per_beat, c.pitch_lo).to_dict(),
            "generated": roll_metrics(ours, c.steps_per_beat, c.pitch_lo).to_dict(),
            "accompaniment": roll_metrics(around, c.steps_per_beat, c.pitch_lo).to_dict(),
        },
        "diversity": {
            "data": diversity(_flat(ref), c.steps).to_dict(),
            "generated": diversity(_flat(ours), c.steps).to_dict(),
        },
        "steps": step,
        "params": model.num_params(),
        "train_seconds": seconds,
        "seconds_per_step": seconds / max(step - first, 1),
        "phrases_per_second": rate.overall(step),
        "device": str(rt.device),
        "precision": rt.precision,
        "processes": rt.world,
    }
    save(metrics)
    if rt.main:
        write_text(out / "metrics.json", json.dumps(metrics, indent=2), what="metrics")
    say(f"{step} steps in {seconds:.0f} s ({metrics['seconds_per_step']:.2f} s a step); "
        f"checkpoint {ckpt_path}")  # fmt: skip
    return {**metrics, "checkpoint": str(ckpt_path)}
