"""Training: corpus -> tokens -> a model family -> a self-describing checkpoint.

AdamW with linear warmup and cosine decay, gradient clipping, a fixed seed, periodic
validation NLL/token on a fixed subset of the valid split, a checkpoint at every validation
(``--resume`` continues from it exactly), and, at the end, the full valid-split NLL beside
the bigram baseline fitted on the same training split.
"""

from __future__ import annotations

import io
import json
import math
import platform
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from antiphon import __version__
from antiphon.atomic import atomic_file, previous_of, write_text
from antiphon.errors import UserError
from antiphon.models.augment import stretch_for, velocity_tables
from antiphon.models.corpus import resolve_corpus
from antiphon.models.dataset import (
    Augment,
    TokenizedCorpus,
    WindowSampler,
    cache_root,
    pitch_shift_tables,
    progress_interval,
    tokenize_corpus,
)
from antiphon.models.distributed import Loss, Runtime, Throughput, setup
from antiphon.models.midi.tokenizer import Tokenizer
from antiphon.models.nll import Bigram, model_nll
from antiphon.models.registry import family

CHECKPOINT_FORMAT = "antiphon-checkpoint/1"


@dataclass
class TrainConfig:
    arch: str = "transformer"
    data: str = "music21"
    out: str = "runs/default"
    tokenizer: str = "midilike"
    # The defaults train the bundled default model on 2 cores in about 40 minutes.
    steps: int = 1400
    batch_size: int = 8
    block_size: int = 512
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_pieces: int = 16  # periodic validation on this many valid pieces (full at the end)
    transpose: int = 6  # augmentation: random shift in [-transpose, +transpose] semitones
    bench_transpose: int = 0  # polyphonic benchmark files: +-semitones (they are all in C)
    velocity: int = 4  # augmentation: all velocities moved by up to this many bins (the default's)
    tempo: float = 0.0  # augmentation: time stretched by up to 1+tempo (MIDI-like tokens)
    keyboard_weight: float = 32.0  # music21: a keyboard work's windows this many times likelier
    seed: int = 1337
    threads: int = 0  # torch threads; 0 = all cores
    device: str = "auto"  # auto|cpu|cuda|mps (models.distributed)
    precision: str = "auto"  # auto|fp32|bf16|fp16
    model: dict = field(default_factory=dict)  # overrides of the family's config

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def resumed_config(state: dict, cfg: TrainConfig) -> TrainConfig:
    """The checkpoint's config with this command's step budget and hardware: a run resumes
    on another machine, device or precision."""
    now = {"steps": cfg.steps, "device": cfg.device, "precision": cfg.precision}
    return TrainConfig.from_dict({**state["train_config"], **now})


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def versions() -> dict[str, str]:
    import miditok
    import symusic

    return {
        "antiphon": __version__,
        "torch": torch.__version__,
        "miditok": miditok.__version__ if hasattr(miditok, "__version__") else "?",
        "symusic": getattr(symusic, "__version__", "?"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def torch_scorer(model: torch.nn.Module):  # type: ignore[no-untyped-def]
    device = next(model.parameters()).device

    @torch.no_grad()
    def score(window: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(window, dtype=np.int64)).unsqueeze(0).to(device)
        if hasattr(model, "log_probs"):  # e.g. an encoder-decoder scores its own way
            return model.log_probs(x)[0].float().cpu().numpy()
        logits, _ = model(x)
        return F.log_softmax(logits[0].float(), dim=-1).cpu().numpy()

    return score


def token_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy; a family whose training differs (teacher-forced
    encoder-decoder) defines ``loss(x, y)`` itself."""
    if hasattr(model, "loss"):
        return model.loss(x, y)
    logits, _ = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def evaluate(model: torch.nn.Module, data: TokenizedCorpus, block: int, pieces: int | None):
    was = model.training
    model.eval()
    nll, n = model_nll(torch_scorer(model), data["valid"], block, max_pieces=pieces)
    model.train(was)
    return nll, n


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not an antiphon checkpoint")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    model = family(ckpt["family"]).build_written(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.eval()


def checkpoint_blob(
    cfg: TrainConfig,
    model: Any,
    opt: torch.optim.Optimizer,
    step: int,
    rng: np.random.Generator,
    **fields: Any,
) -> dict:
    """What every window-trained checkpoint holds (``fields`` adds the representation's
    own: ``tokenizer`` or ``grid``, ``data``, ``history``, ``metrics``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "family": cfg.arch,
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "train_config": cfg.to_dict(),
        **fields,
        "versions": versions(),
        "sampler_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }


def restore(
    state: dict,
    model: Any,
    opt: torch.optim.Optimizer,
    rng: np.random.Generator,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[int, list[dict]]:
    """Resume from a checkpoint_blob: weights, optimizer, RNGs (and the fp16 loss scale);
    returns (step, history). The sampler's stream is the data position: it does not depend
    on the number of processes, so a run resumes under any."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if scaler is not None and scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng.bit_generator.state = state["sampler_rng"]
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state.get("history", [])


def save_on_main(
    rt: Runtime,
    path: Path,
    cfg: TrainConfig,
    model: Any,
    opt: torch.optim.Optimizer,
    step: int,
    rng: np.random.Generator,
    scaler: torch.amp.GradScaler,
    metrics: dict | None,
    **fields: Any,
) -> None:
    """A window-trained checkpoint, written by rank 0 while the other ranks wait for it."""
    if rt.main:
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {**fields, "metrics": metrics or {}, "scaler": scaler.state_dict()}
        save_atomic(checkpoint_blob(cfg, model, opt, step, rng, **extra), path)
    rt.barrier()


def save_atomic(blob: dict, path: Path) -> None:
    """Write a checkpoint atomically, keeping the one it replaces as ``ckpt.prev.pt``: an
    interrupted save leaves both earlier checkpoints complete."""
    # Serialized in memory first: torch.save turns a full disk into a RuntimeError, while
    # the plain write below says which file and why.
    buf = io.BytesIO()
    torch.save(blob, buf)
    with atomic_file(path, "wb", what="checkpoint", keep_previous=True) as f:
        f.write(buf.getbuffer())


def resume_checkpoint(path: Path, say: Callable[[str], None] = lambda msg: None) -> dict:
    """``--resume``: the newest complete checkpoint, ``path`` or else the one it replaced."""
    previous = previous_of(path)
    try:
        return load_checkpoint(path)
    except UserError as exc:
        if not previous.is_file():
            raise
        say(f"{exc}; resuming from the checkpoint before it, {previous}")
    return load_checkpoint(previous)


def bar_log(bar: Any, progress: bool, log: Callable[[str], None]) -> Callable[[str], None]:
    """Where a periodic line goes: above the progress bar when there is one (printing
    under it would garble it), else to the caller's ``log``."""
    return bar.write if progress else log


def training_bar(total: int, initial: int, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc="training",
        unit="step",
        disable=not progress,
        mininterval=progress_interval(),
    )


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Any = None,
) -> dict:
    """Train ``cfg.arch`` on ``cfg.data``; returns the final metrics (also in the checkpoint)."""
    say = log or (lambda msg: None)
    fam = family(cfg.arch)
    if fam.trainer is not None:  # families that do not learn from token windows
        from antiphon.models.registry import resolve

        return resolve(fam.trainer)(cfg, resume=resume, progress=progress, log=log)
    out = Path(cfg.out)
    ckpt_path = out / "ckpt.pt"
    state = None
    if resume:
        state = resume_checkpoint(ckpt_path, say)
        cfg = resumed_config(state, cfg)
    return run_on_runtime(_train_tokens, cfg, state, say, progress)


def run_on_runtime(
    body: Callable[..., dict], cfg: TrainConfig, state: dict | None, say: Any, progress: bool
) -> dict:
    """``body(cfg, rt, state, say, progress)`` in this process's Runtime (models.distributed):
    log lines and the progress bar on rank 0 only; the process group left at the end."""
    rt = setup(cfg.device, cfg.precision)
    try:
        return body(cfg, rt, state, say if rt.main else lambda msg: None, progress and rt.main)
    finally:
        rt.close()


def _train_tokens(
    cfg: TrainConfig, rt: Runtime, state: dict | None, say: Any, progress: bool
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

    tokenizer = (
        Tokenizer.from_params(state["tokenizer"]) if state else Tokenizer.create(cfg.tokenizer)
    )
    with rt.main_first():  # rank 0 builds the caches, the others map them
        corpus = resolve_corpus(cfg.data, cache_dir=cache_root(), progress=progress)
        data = tokenize_corpus(corpus, tokenizer, cache_root() / "tokens", progress=progress)
    say(
        f"corpus {corpus.name}: {data.summary['pieces']['train']} train / "
        f"{data.summary['pieces']['valid']} valid pieces, "
        f"{data.summary['tokens']['train']:,} train tokens, {data.failed} unreadable files skipped"
    )
    if data["train"].pieces == 0 or data["valid"].pieces == 0:
        raise UserError(f"{cfg.data}: too few readable MIDI files for a train and a valid split")

    model_cfg = {**cfg.model, "vocab_size": len(tokenizer), "block_size": cfg.block_size}
    model = fam.build(state["model_config"] if state else model_cfg).to(rt.device)
    opt = make_optimizer(model, cfg)
    scaler = rt.scaler()
    rows = rt.rows(cfg.batch_size)
    sampler = WindowSampler(
        data["train"],
        cfg.block_size,
        cfg.seed,
        pitch_shift_tables(tokenizer.vocab, cfg.transpose),
        weights=train_weights(data, cfg, say),
        augment=train_augment(tokenizer, cfg),
    )
    step = 0
    history: list[dict] = []
    if state:
        step, history = restore(state, model, opt, sampler.rng, scaler)
    say(f"{cfg.arch}: {model.num_params():,} parameters on {rt.describe()}")
    net = rt.wrap(Loss(model, token_loss))

    def save(metrics: dict | None = None) -> None:
        fields = {"tokenizer": tokenizer.to_params(), "data": data.summary, "history": history}
        save_on_main(rt, ckpt_path, cfg, model, opt, step, sampler.rng, scaler, metrics, **fields)

    model.train()
    bar = training_bar(cfg.steps, step, progress)
    rate = Throughput(cfg.batch_size * cfg.block_size, step)
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        batch = rt.tensor(sampler.batch(cfg.batch_size, rows).astype(np.int64))
        x, y = batch[:, :-1], batch[:, 1:]
        with rt.autocast():
            loss = net(x, y)
        rt.optimize(loss, opt, scaler, model.parameters(), cfg.grad_clip)
        step += 1
        loss_value = rt.mean(loss)
        bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{rate(step):,.0f}", refresh=False)
        bar.update()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if rt.main:
                nll, _ = evaluate(model, data, cfg.block_size, cfg.eval_pieces)
                history.append({"step": step, "train_loss": loss_value, "valid_nll_subset": nll})
                bar_log(bar, progress, say)(
                    f"step {step}: train loss {loss_value:.4f}, valid NLL/token {nll:.4f}"
                )
            save()
    bar.close()
    if not rt.main:
        return {}

    say("scoring the whole valid split ...")
    valid_nll, n_valid = evaluate(model, data, cfg.block_size, None)
    bigram = Bigram(len(tokenizer)).fit(data["train"])
    bigram_nll, alpha = bigram.best_nll(data["valid"])
    metrics = {
        "valid_nll": valid_nll,
        "valid_tokens": n_valid,
        "bigram_valid_nll": bigram_nll,
        "bigram_alpha": alpha,
        "steps": step,
        "params": model.num_params(),
        "tokens_per_second": rate.overall(step),
        "device": str(rt.device),
        "precision": rt.precision,
        "processes": rt.world,
    }
    if rt.distributed:  # the end is rank 0's alone: the others have left the loop
        rt.close()
    save(metrics)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2), what="metrics")
    say(
        f"valid NLL/token {valid_nll:.4f} over {n_valid:,} tokens "
        f"(bigram baseline {bigram_nll:.4f}); checkpoint {ckpt_path}"
    )
    return {**metrics, "checkpoint": str(ckpt_path)}


def train_weights(data: TokenizedCorpus, cfg: TrainConfig, say: Any) -> np.ndarray | None:
    """``--keyboard-weight``: per-piece weights of the training split (None: uniform)."""
    if cfg.keyboard_weight <= 0:
        raise UserError(f"--keyboard-weight must be positive, got {cfg.keyboard_weight}")
    split = data["train"]
    weights = split.piece_weights(cfg.keyboard_weight)
    if weights is None:
        if cfg.keyboard_weight != 1.0:
            say(f"--keyboard-weight {cfg.keyboard_weight}: {cfg.data} has no keyboard works")
        return None
    lengths = np.diff(split.offsets)
    share = float((lengths * weights)[list(split.keyboard)].sum() / (lengths * weights).sum())
    say(
        f"{len(split.keyboard)} keyboard works ({int(lengths[list(split.keyboard)].sum()):,} "
        f"tokens) weighted x{cfg.keyboard_weight:g}: {100 * share:.1f} % of the windows"
    )
    return weights


def train_augment(tokenizer: Tokenizer, cfg: TrainConfig) -> Augment:
    """``--velocity`` and ``--tempo`` (``models.augment``)."""
    if cfg.velocity < 0:
        raise UserError(f"--velocity must be 0 or more bins, got {cfg.velocity}")
    return Augment(
        velocity=velocity_tables(tokenizer.vocab, cfg.velocity) if cfg.velocity else None,
        stretch=stretch_for(tokenizer.kind, tokenizer.vocab, tokenizer.grid.tpq, cfg.tempo),
        tempo=cfg.tempo,
    )


def valid_split_of(ckpt: dict) -> tuple[Any, str]:
    """The checkpoint's validation tokens if its corpus can be resolved, else (None, reason)."""
    data = ckpt.get("train_config", {}).get("data")
    if not data:
        return None, "no corpus recorded"
    try:
        corpus = resolve_corpus(data, cache_dir=cache_root(), progress=False)
        tok = Tokenizer.from_params(ckpt["tokenizer"])
        split = tokenize_corpus(corpus, tok, cache_root() / "tokens", progress=False)["valid"]
    except UserError as exc:
        return None, str(exc)
    return (
        (split, f"valid tokens of {corpus.name}") if split.pieces else (None, "empty valid split")
    )
