"""One training loop for the adversarial families (``crnn-gan``, ``midinet``).

A family brings a ``Recipe``: how its corpus rows are read, how batches are drawn, its
discriminator, its losses (maximum-likelihood pre-training, D's loss, G's loss and the part
of it the skip rule compares), and how to turn N generated samples and N pieces of the data
into piano rolls for ``models.diversity``. The loop around them is shared:

- optional pre-training of G alone for ``pretrain_steps`` (C-RNN-GAN's maximum likelihood);
- then each step: D updates on a real and a generated batch, G updates ``g_updates`` times,
  each player skipping its update when ``models.gan.SkipRule`` says it is winning
  (``skip_rule=False`` in the family config turns the rule off);
- Adam with beta1 = 0.5 (DCGAN's choice; momentum 0.9 makes the two players oscillate), the
  warmup + cosine schedule of token training on both, D's rate scaled by ``d_lr_scale``;
- every ``eval_every`` steps: the D and G losses, the diversity of a fixed-seed batch of
  samples (the data's figure computed once, the same way) into ``models.gan_log`` and the
  checkpoint; at the end ``OUT/gan-log.json``, ``OUT/gan-training.png``, ``OUT/metrics.json``.

The checkpoint is the token trainers' format: ``model`` is the generator (what is exported),
``discriminator`` and the skip rule's state ride beside it, ``optimizer`` holds both Adams
(``PairOptimizer``), so ``--resume`` continues exactly.

Under torchrun every process draws the same global batch (and the same fresh noise for G) and
keeps its rows; the statistics a family reads of the whole batch (feature and mean matching,
minibatch discrimination, BatchNorm) read it through ``models.wholebatch``, each player's
gradients are averaged over the processes before clipping (``Runtime.average_gradients``), and
the skip rule reads the losses of the whole batch, so every process decides alike and N
processes take the steps one takes. Rank 0 writes the checkpoint, the log and the plot.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from antiphon.atomic import write_text
from antiphon.errors import UserError
from antiphon.models.corpus import resolve_corpus
from antiphon.models.dataset import cache_root
from antiphon.models.distributed import Runtime, Throughput
from antiphon.models.diversity import Diversity, diversity
from antiphon.models.gan import PairOptimizer, SkipRule
from antiphon.models.gan_data import RowCorpus, read_rows
from antiphon.models.gan_log import GanLog
from antiphon.models.midi.notes import Grid
from antiphon.models.notes_train import NOTE_GRID, NoteSplit
from antiphon.models.registry import family
from antiphon.models.train import (
    TrainConfig,
    bar_log,
    lr_at,
    restore,
    resume_checkpoint,
    resumed_config,
    run_on_runtime,
    save_on_main,
    training_bar,
)
from antiphon.models.wholebatch import whole_batch

DIVERSITY_SAMPLES = 64
DIVERSITY_SEED = 12345


@dataclass
class Losses:
    total: torch.Tensor  # what the player minimises
    compared: torch.Tensor  # what the skip rule reads (G: the adversarial part)


class Batches(Protocol):
    rng: np.random.Generator

    def batch(self, size: int, device: torch.device) -> dict[str, torch.Tensor]: ...


class Recipe(Protocol):
    reader: str  # "module:function" over (notes, tpq), for models.gan_data
    columns: int
    unit: str  # what a row of a batch holds, for the throughput ("notes", "bars")

    def per_row(self, config: Any) -> int:
        """How many ``unit`` a row of a batch holds."""
        ...

    def discriminator(self, config: Any) -> torch.nn.Module: ...

    def batches(self, split: NoteSplit, cfg: TrainConfig, config: Any, grid: Grid) -> Batches: ...

    def pretrain_loss(self, g: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor | None: ...

    def d_loss(self, g: Any, d: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def g_loss(self, g: Any, d: Any, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> Losses:
        """``noise``: a fresh draw of the batch's ``noise`` shape, for this G update."""

    def sample_rolls(self, g: Any, split: NoteSplit, n: int, seed: int) -> np.ndarray: ...

    def data_rolls(self, split: NoteSplit, config: Any, n: int, seed: int) -> np.ndarray: ...


def train_gan(recipe: Recipe, cfg: TrainConfig, *, resume: bool, progress: bool, log: Any) -> dict:
    say = log or (lambda msg: None)
    state = None
    if resume:
        state = resume_checkpoint(Path(cfg.out) / "ckpt.pt", say)
        cfg = resumed_config(state, cfg)

    def body(cfg: TrainConfig, rt: Runtime, state: dict | None, say: Any, progress: bool):
        return _train(recipe, cfg, rt, state, say, progress)

    return run_on_runtime(body, cfg, state, say, progress)


def _adam(params: Any, lr: float, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, betas=(0.5, 0.999), weight_decay=cfg.weight_decay)


def _train(
    recipe: Recipe, cfg: TrainConfig, rt: Runtime, state: dict | None, say: Any, progress: bool
) -> dict:
    fam = family(cfg.arch)
    out = Path(cfg.out)
    ckpt_path = out / "ckpt.pt"
    if state:
        say(f"resuming {ckpt_path} at step {state['step']}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    grid = Grid.from_dict(state["grid"]) if state else NOTE_GRID
    with rt.main_first():  # rank 0 builds the caches, the others read them
        corpus = resolve_corpus(cfg.data, cache_dir=cache_root(), progress=progress)
        data: RowCorpus = read_rows(
            corpus, recipe.reader, recipe.columns, grid, cache_root() / "gan", progress=progress
        )
    s = data.summary
    say(
        f"corpus {corpus.name}: {s['pieces']['train']} train / {s['pieces']['valid']} valid "
        f"pieces, {s['rows']['train']:,} train rows, {data.failed} unreadable files skipped"
    )
    if data["train"].pieces == 0 or data["valid"].pieces == 0:
        raise UserError(f"{cfg.data}: too few readable MIDI files for a train and a valid split")

    g = fam.build(state["model_config"] if state else cfg.model).to(rt.device)
    c = g.config
    d = recipe.discriminator(c).to(rt.device)
    d_lr_scale = getattr(c, "d_lr_scale", 1.0)
    opt = PairOptimizer(_adam(g.parameters(), cfg.lr, cfg), _adam(d.parameters(), cfg.lr, cfg))
    for group in opt.d.param_groups:
        group["lr_scale"] = d_lr_scale
    rule = SkipRule()
    use_rule = getattr(c, "skip_rule", True)
    batches = recipe.batches(data["train"], cfg, c, grid)
    # One loss scaler a player (enabled for fp16 only): each scales its own backward.
    scaler_g, scaler_d = rt.scaler(), rt.scaler()
    mine = rt.rows(cfg.batch_size)  # this process's rows of every global batch
    rows = slice(mine.start, mine.stop)
    step, history = 0, []
    glog = GanLog()
    if state:
        step, history = restore(state, g, opt, batches.rng, scaler_g)
        d.load_state_dict(state["discriminator"])
        if scaler_d.is_enabled() and state.get("d_scaler"):
            scaler_d.load_state_dict(state["d_scaler"])
        rule.load_state_dict(state.get("skip_rule", {}))
        glog = GanLog.from_dict(state.get("gan_log"))
    if glog.data_diversity is None:
        glog.data_diversity = diversity(
            recipe.data_rolls(data["train"], c, DIVERSITY_SAMPLES, DIVERSITY_SEED)
        )
    say(
        f"{cfg.arch}: generator {g.num_params():,} parameters, discriminator "
        f"{sum(p.numel() for p in d.parameters()):,}, on {rt.describe()}; data diversity: "
        f"{glog.data_diversity.distinct_bars:.3f} distinct bars, mean distance "
        f"{glog.data_diversity.mean_distance:.3f}"
    )
    pretrain = int(getattr(c, "pretrain_steps", 0))
    g_updates = int(getattr(c, "g_updates", 1))

    def samples_diversity() -> Diversity:
        g.eval()
        with torch.no_grad():
            rolls = recipe.sample_rolls(g, data["train"], DIVERSITY_SAMPLES, DIVERSITY_SEED)
        g.train()
        return diversity(rolls)

    def save(metrics: dict | None = None) -> None:
        fields = {
            "grid": grid.to_dict(),
            "data": data.summary,
            "history": history,
            "discriminator": d.state_dict(),
            "skip_rule": rule.state_dict(),
            "gan_log": glog.to_dict(),
            "d_scaler": scaler_d.state_dict(),
        }
        save_on_main(rt, ckpt_path, cfg, g, opt, step, batches.rng, scaler_g, metrics, **fields)

    g.train()
    d.train()
    bar = training_bar(cfg.steps, step, progress)
    rate = Throughput(cfg.batch_size * recipe.per_row(c), step)
    rate_key = f"{recipe.unit}_s"

    def update(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: Any, params: Any) -> None:
        rt.optimize(loss, opt, scaler, params, cfg.grad_clip, average=True)

    started, first = time.perf_counter(), step
    phase = {"pretraining": [0.0, 0], "adversarial": [0.0, 0]}  # seconds, steps
    d_value = g_value = None
    skipped = {"d": 0, "g": 0}
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg) * group.get("lr_scale", 1.0)
        t0 = time.perf_counter()
        whole = batches.batch(cfg.batch_size, torch.device("cpu"))
        batch = {k: rt.tensor(v[rows]) for k, v in whole.items()}
        with whole_batch(rt):
            if step < pretrain:
                with rt.autocast():
                    pre = recipe.pretrain_loss(g, batch)
            else:
                pre = None
            if pre is not None:
                update(pre, opt.g, scaler_g, g.parameters())
                g_value, d_value = rt.mean(pre), None
                postfix = {"mle": f"{g_value:.3f}"}
            else:
                # the losses are the whole batch's: every process decides alike
                train_d, train_g = rule.decide() if use_rule else (True, True)
                with rt.autocast():
                    dl = recipe.d_loss(g, d, batch)
                if train_d:
                    update(dl, opt.d, scaler_d, d.parameters())
                else:
                    skipped["d"] += 1
                for _ in range(g_updates):
                    # each G update draws its own z, the whole batch's (this process's rows)
                    noise = rt.tensor(torch.randn(whole["noise"].shape)[rows])
                    with rt.autocast():
                        gl = recipe.g_loss(g, d, batch, noise)
                    if train_g:
                        update(gl.total, opt.g, scaler_g, g.parameters())
                if not train_g:
                    skipped["g"] += 1
                d_value, g_value = rt.mean(dl), rt.mean(gl.compared)
                rule.update(d_value, g_value)
                postfix = {"D": f"{d_value:.3f}", "G": f"{g_value:.3f}"}
        step += 1
        spent = phase["pretraining" if pre is not None else "adversarial"]
        spent[0] += time.perf_counter() - t0
        spent[1] += 1
        bar.set_postfix(**postfix, **{rate_key: f"{rate(step):,.0f}"}, refresh=False)
        bar.update()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            div = samples_diversity()
            row = glog.add(
                step,
                d_value,
                g_value,
                div,
                pretraining=pre is not None,
                skipped_d=skipped["d"],
                skipped_g=skipped["g"],
            )
            history.append(row)
            bar_log(bar, progress, say)(
                f"step {step}: "
                + (
                    f"pre-training loss {g_value:.4f}"
                    if pre is not None
                    else f"D {d_value:.4f}, G {g_value:.4f} (skipped D {skipped['d']}, "
                    f"G {skipped['g']})"
                )
                + f"; samples: {div.distinct_bars:.3f} distinct bars, mean distance "
                f"{div.mean_distance:.3f}"
            )
            save()
    bar.close()
    elapsed = time.perf_counter() - started
    div = samples_diversity()
    data_div = glog.data_diversity
    metrics = {
        "d_loss": d_value,
        "g_loss": g_value,
        "diversity": div.to_dict(),
        "data_diversity": data_div.to_dict() if data_div else None,
        "skipped_d": skipped["d"],
        "skipped_g": skipped["g"],
        "steps": step,
        "params": g.num_params(),
        "discriminator_params": sum(p.numel() for p in d.parameters()),
        "seconds_per_step": elapsed / max(1, step - first),
        # the two phases cost differently (C-RNN-GAN's adversarial step generates freely)
        **{f"seconds_per_{k}_step": v[0] / v[1] for k, v in phase.items() if v[1]},
        "device": str(rt.device),
        f"{recipe.unit}_per_second": rate.overall(step),
        "precision": rt.precision,
        "processes": rt.world,
    }
    save(metrics)
    if rt.main:
        write_text(out / "metrics.json", json.dumps(metrics, indent=2), what="metrics")
        glog.write(out)
    say(
        f"step {step}: samples {div.distinct_bars:.3f} distinct bars, mean distance "
        f"{div.mean_distance:.3f} (data {data_div.distinct_bars:.3f}, "
        f"{data_div.mean_distance:.3f}); {metrics['seconds_per_step']:.3f} s/step; checkpoint "
        f"{ckpt_path}"
    )
    return {**metrics, "checkpoint": str(ckpt_path)}
