"""Training MusicVAE: a corpus read as melodies, phrases of ``bars`` bars, the ELBO.

Every file is read onto ``MELODY_GRID`` (a tick is a sixteenth) and reduced to its skyline
(``models.midi.melody``); its phrases start on every bar (4/4 assumed, as Magenta's 2-bar
melody models did) and are kept when they hold at least ``MIN_NOTES`` note-ons. Phrases
are drawn at random and transposed within the range. The loss is the model's (``beta``
from its schedule, free bits); optimizer, warmup and cosine schedule, clipping and the
checkpoint format are token training's (``models.train``), the ``grid`` in place of a
tokenizer. Under torchrun (``models.distributed``) every process draws the same global batch
of phrases, transpositions and latent noise from the same seeded streams and takes its rows;
the loss is a mean over phrases (free bits are per phrase), so DDP's averaged gradients are
one process's, and N processes take the steps one takes. Rank 0 validates and saves.

At the end, on every valid phrase: reconstruction accuracy teacher-forced (each event
predicted from the true ones before it) and sampled (the whole phrase decoded freely at
softmax temperature 1), both from a latent drawn from the posterior, as MusicVAE's Table 1
reports them; and the KL to the prior in bits per phrase.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from antiphon.atomic import atomic_file, write_text
from antiphon.errors import UserError
from antiphon.models.corpus import Corpus, resolve_corpus
from antiphon.models.dataset import cache_root, corpus_cache_key, progress_interval
from antiphon.models.distributed import Loss, Runtime, Throughput
from antiphon.models.midi.melody import FIRST_PITCH, MELODY_GRID, MelodyRange, skyline
from antiphon.models.midi.notes import read_performance
from antiphon.models.musicvae import MusicVAE, beta_at
from antiphon.models.registry import family
from antiphon.models.train import (
    TrainConfig,
    bar_log,
    lr_at,
    make_optimizer,
    restore,
    resume_checkpoint,
    resumed_config,
    run_on_runtime,
    save_on_main,
    training_bar,
)

MIN_NOTES = 4  # a phrase with fewer note-ons is mostly rest: not a melody to learn
_CACHE_FORMAT = 1


@dataclass
class Phrases:
    train: np.ndarray  # (N, T) int64 events
    valid: np.ndarray
    summary: dict


def piece_phrases(args: tuple[str, int, int, int, int]) -> np.ndarray | None:
    path, steps, bar, lo, n = args
    try:
        perf = read_performance(path, MELODY_GRID)
    except Exception:  # an unreadable file is skipped and counted, never fatal
        return None
    rng = MelodyRange(lo, n)
    end = perf.end
    line = skyline(perf.notes, 0, end + 1, rng)
    out = [
        line[s : s + steps]
        for s in range(0, max(0, len(line) - steps) + 1, bar)
        if len(line[s : s + steps]) == steps
        and (line[s : s + steps] >= FIRST_PITCH).sum() >= MIN_NOTES
    ]
    return np.stack(out) if out else np.zeros((0, steps), dtype=np.int64)


def read_phrases(corpus: Corpus, config: Any, *, progress: bool = True) -> Phrases:
    """Every phrase of the train and valid splits (cached per corpus and setting)."""
    setting = json.dumps([config.steps, config.steps_per_bar, config.pitch_lo, config.n_pitches])
    key = corpus_cache_key(corpus, f"melody/{_CACHE_FORMAT}", setting)
    cache = cache_root() / "melody" / f"phrases-{key}.npz"
    if cache.exists():
        z = np.load(cache)
        return Phrases(z["train"], z["valid"], json.loads(bytes(z["meta"]).decode()))
    from tqdm import tqdm

    splits: dict[str, np.ndarray] = {}
    failed = 0
    for split in ("train", "valid"):
        jobs = [(str(p), config.steps, config.steps_per_bar, config.pitch_lo, config.n_pitches)
                for p in corpus.split(split)]  # fmt: skip
        bar = tqdm(total=len(jobs), desc=f"reading {split}", unit="file", disable=not progress,
                   mininterval=progress_interval())  # fmt: skip
        workers = min(os.cpu_count() or 1, 4)
        pieces = []
        if len(jobs) >= 16 and workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                results = list(pool.map(piece_phrases, jobs, chunksize=8))
        else:
            results = [piece_phrases(j) for j in jobs]
        for r in results:
            bar.update()
            if r is None:
                failed += 1
            elif len(r):
                pieces.append(r)
        bar.close()
        splits[split] = (
            np.concatenate(pieces) if pieces else np.zeros((0, config.steps), dtype=np.int64)
        )
    summary = {
        **corpus.summary(),
        "unreadable": failed,
        "phrases": {k: len(v) for k, v in splits.items()},
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(cache, what="melody cache") as f:
        np.savez(f, train=splits["train"], valid=splits["valid"],
                 meta=np.frombuffer(json.dumps(summary).encode(), dtype=np.uint8))  # fmt: skip
    return Phrases(splits["train"], splits["valid"], summary)


def transposed(batch: np.ndarray, shifts: np.ndarray, n_pitches: int) -> np.ndarray:
    """Each phrase moved by its shift where all its notes stay in range (else unmoved)."""
    out = batch.copy()
    notes = batch >= FIRST_PITCH
    for i, k in enumerate(shifts):
        moved = batch[i] + k
        if ((moved[notes[i]] >= FIRST_PITCH) & (moved[notes[i]] < FIRST_PITCH + n_pitches)).all():
            out[i][notes[i]] = moved[notes[i]]
    return out


# -- measuring -----------------------------------------------------------------------------
@torch.no_grad()
def sample_phrases(
    model: MusicVAE, z: torch.Tensor, temperature: float, generator: torch.Generator
) -> torch.Tensor:
    """(B, Z) -> (B, T) events decoded freely (sampled at ``temperature``; 0: argmax)."""
    c = model.config
    B = z.shape[0]
    conditions = model.conduct(z)
    token = torch.full((B, 1), model.start, dtype=torch.long)
    out = []
    for s in range(c.steps):
        if s % c.section_steps == 0:
            cond = conditions[:, s // c.section_steps]
            state = model.initial_state(cond)
        logits, state = model.decode_steps(token, cond, state)
        logits = logits[:, -1]
        if temperature <= 0:
            token = logits.argmax(-1, keepdim=True)
        else:
            probs = torch.softmax(logits / temperature, -1)
            token = torch.multinomial(probs, 1, generator=generator)
        out.append(token)
    return torch.cat(out, dim=1)


@torch.no_grad()
def reconstruction(model: MusicVAE, phrases: np.ndarray, seed: int = 0, batch: int = 256) -> dict:
    """Teacher-forced and sampled reconstruction accuracy (latent from the posterior,
    temperature 1) and the KL in bits, over ``phrases``."""
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    forced = sampled = kl = 0.0
    steps = 0
    for b in range(0, len(phrases), batch):
        x = torch.from_numpy(phrases[b : b + batch].astype(np.int64))
        mu, sigma = model.encode(x)
        z = mu + sigma * torch.randn(mu.shape, generator=g)
        forced += float((model.teacher_forced(x, z).argmax(-1) == x).sum())
        sampled += float((sample_phrases(model, z, 1.0, g) == x).sum())
        kl += float((0.5 * (mu**2 + sigma**2 - 1) - torch.log(sigma)).sum())
        steps += x.numel()
    model.train(was)
    n = max(len(phrases), 1)
    return {
        "teacher_forced_accuracy": forced / max(steps, 1),
        "sampled_accuracy": sampled / max(steps, 1),
        "kl_bits": kl / n / math.log(2.0),
        "phrases": len(phrases),
    }


@torch.no_grad()
def valid_loss(model: MusicVAE, phrases: np.ndarray, beta: float, limit: int = 512) -> dict:
    was = model.training
    model.eval()
    x = torch.from_numpy(phrases[:limit].astype(np.int64))
    g = torch.Generator().manual_seed(0)
    terms = model.loss_terms(x, torch.randn(len(x), model.config.z_size, generator=g), beta)
    model.train(was)
    return {k: float(v) for k, v in terms.items()}


# -- the training loop -----------------------------------------------------------------------
def _loss_terms(
    model: MusicVAE, melody: torch.Tensor, noise: torch.Tensor, beta: float
) -> dict[str, torch.Tensor]:
    return model.loss_terms(melody, noise, beta)


def train_vae(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, log: Any = None):
    say = log or (lambda msg: None)
    state = None
    if resume:
        state = resume_checkpoint(Path(cfg.out) / "ckpt.pt", say)
        cfg = resumed_config(state, cfg)
    return run_on_runtime(_train_vae, cfg, state, say, progress)


def _train_vae(cfg: TrainConfig, rt: Runtime, state: dict | None, say: Any, progress: bool):
    out = Path(cfg.out)
    ckpt_path = out / "ckpt.pt"
    if state:
        say(f"resuming {ckpt_path} at step {state['step']}")
    torch.set_num_threads(cfg.threads or 1)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    model = family(cfg.arch).build(state["model_config"] if state else cfg.model).to(rt.device)
    mc = model.config
    with rt.main_first():  # rank 0 builds the caches, the others read them
        corpus = resolve_corpus(cfg.data, cache_dir=cache_root(), progress=progress)
        data = read_phrases(corpus, mc, progress=progress)
    say(
        f"corpus {corpus.name}: {len(data.train):,} train / {len(data.valid):,} valid phrases of "
        f"{mc.bars} bars, {data.summary['unreadable']} unreadable files skipped"
    )
    if len(data.train) == 0 or len(data.valid) == 0:
        raise UserError(f"{cfg.data}: too few melodic phrases for a train and a valid split")
    opt = make_optimizer(model, cfg)
    scaler = rt.scaler()
    rows = rt.rows(cfg.batch_size)  # this process's share of every global batch
    rng = np.random.default_rng(cfg.seed)
    step, history = 0, []
    if state:
        step, history = restore(state, model, opt, rng, scaler)
    say(f"{cfg.arch}: {model.num_params():,} parameters on {rt.describe()}")
    net = rt.wrap(Loss(model, _loss_terms))

    def save(metrics: dict | None = None) -> None:
        fields = {"grid": MELODY_GRID.to_dict(), "data": data.summary, "history": history}
        save_on_main(rt, ckpt_path, cfg, model, opt, step, rng, scaler, metrics, **fields)

    t0 = time.perf_counter()
    model.train()
    bar = training_bar(cfg.steps, step, progress)
    rate = Throughput(cfg.batch_size, step)
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        picked = rng.integers(0, len(data.train), cfg.batch_size)
        shifts = rng.integers(-cfg.transpose, cfg.transpose + 1, cfg.batch_size)
        # The whole batch's noise from the one seeded stream, as one process draws it.
        noise = torch.randn(cfg.batch_size, mc.z_size)[rows.start : rows.stop]
        phrases = transposed(
            data.train[picked[rows.start : rows.stop]], shifts[rows.start : rows.stop], mc.n_pitches
        )
        x = rt.tensor(phrases.astype(np.int64))
        beta = beta_at(step, mc)
        with rt.autocast():
            terms = net(x, rt.tensor(noise), beta)
        rt.optimize(terms["loss"], opt, scaler, model.parameters(), cfg.grad_clip)
        step += 1
        loss, kl = rt.mean(terms["loss"]), rt.mean(terms["kl"])
        bar.set_postfix(loss=f"{loss:.2f}", kl=f"{kl:.1f}", refresh=False)
        bar.update()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if rt.main:
                v = valid_loss(model, data.valid, beta)
                history.append({"step": step, "train_loss": loss, "beta": beta,
                                **{f"valid_{k}": x for k, x in v.items()}})  # fmt: skip
                bar_log(bar, progress, say)(
                    f"step {step}: train loss {loss:.3f}, valid NLL/phrase "
                    f"{v['nll']:.3f}, KL {v['kl'] / math.log(2):.1f} bits, teacher-forced "
                    f"accuracy {v['accuracy']:.3f} (beta {beta:.3f})"
                )
            save()
    bar.close()
    seconds = time.perf_counter() - t0
    if not rt.main:
        return {}

    say("measuring reconstruction on every valid phrase ...")
    r = reconstruction(model, data.valid, seed=cfg.seed)
    metrics = {
        **{f"valid_{k}": v for k, v in r.items()},
        "steps": step,
        "params": model.num_params(),
        "train_seconds": seconds,
        "seconds_per_step": seconds / max(step - (state or {}).get("step", 0), 1),
        "phrases_per_second": rate.overall(step),
        "device": str(rt.device),
        "precision": rt.precision,
        "processes": rt.world,
    }
    if rt.distributed:  # the end is rank 0's alone: the others have left the loop
        rt.close()
    save(metrics)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2), what="metrics")
    say(
        f"valid reconstruction over {r['phrases']:,} phrases: teacher-forced "
        f"{r['teacher_forced_accuracy']:.3f}, sampled {r['sampled_accuracy']:.3f}, KL "
        f"{r['kl_bits']:.1f} bits; checkpoint {ckpt_path}"
    )
    return {**metrics, "checkpoint": str(ckpt_path)}
