"""Training the piano-roll families: whole pieces, truncated BPTT, early stopping on valid.

``--data polyphonic:FILE`` trains on a benchmark file's train split and validates on its
valid split; any other ``--data`` is a MIDI corpus (``models.corpus``) cut into frames on the
model's grid (``models.midi.polyphonic``). Pieces are read from their first frame with the empty
(zero) state and carried through in windows of ``block_size`` frames, the state passed on
between windows — exactly how the benchmark scores them and how the daemon runs — so the
zero state always means "the piece starts here". Similar lengths are batched together.

Regularisation: dropout and input dropout (model config), AdamW weight decay, gradient
clipping, random transposition (never for benchmark files: their pieces are all in C), and
early stopping on a moving average of the weights: validation scores the average (``AVERAGE``),
the checkpoint keeps the best one, and training stops after ``PATIENCE`` validations
without improvement. On JSB the average is worth ~0.05 nats a frame over the raw weights at
a learning rate high enough to train fast (their noise averages out).
The checkpoint has train.py's self-describing format (``grid`` instead of a tokenizer) plus a
``resume`` entry (current weights, optimizer, position in the epoch, carried state, RNGs)
so ``--resume`` continues exactly.

Under torchrun (``models.distributed``) every process plans the same epoch and takes its rows
of each batch (an epoch's short last batch padded with empty rows so the shares are equal);
a window's loss is the mean over the whole batch's frames, so N processes take the steps one
takes. The checkpoint holds the carried state of every row, gathered from the processes, and
a resumed run shares it out again under any number of them; rank 0 validates, and its count
of validations without improvement is broadcast so all stop at the same step.
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from antiphon.atomic import write_text
from antiphon.errors import UserError
from antiphon.models.corpus import resolve_corpus
from antiphon.models.dataset import cache_root
from antiphon.models.distributed import Loss, Runtime, Throughput
from antiphon.models.midi.notes import Grid, MidiFileError
from antiphon.models.midi.polyphonic import N_KEYS, PITCH_LO, benchmark_split, file_roll
from antiphon.models.registry import family
from antiphon.models.train import (
    CHECKPOINT_FORMAT,
    TrainConfig,
    lr_at,
    make_optimizer,
    resume_checkpoint,
    resumed_config,
    run_on_runtime,
    save_atomic,
    training_bar,
    versions,
)

GRID_TPQ = 8  # the tokenizers' default grid: frame_ticks=2 is a 1/16 note
PATIENCE = 10  # validations without improvement before training stops
AVERAGE = 0.99  # decay of the weights' moving average (about the last 100 steps)
BUCKET = 8  # pieces are sorted by length within groups of BUCKET batches
PREFIX = "polyphonic:"  # --data polyphonic:FILE trains on a benchmark file's train split


# -- training data: a benchmark file or a corpus, as rolls -----------------------------------------
@dataclass
class Rolls:
    """Train and valid pieces of one source, and where they came from."""

    train: list[np.ndarray]
    valid: list[np.ndarray]
    summary: dict


def load_rolls(
    data: str,
    grid: Grid,
    frame_ticks: int,
    *,
    pitch_lo: int = PITCH_LO,
    n_keys: int = N_KEYS,
    progress: bool = False,
    only: tuple[str, ...] = ("train", "valid"),
) -> Rolls:
    """``polyphonic:FILE`` (its train and valid splits) or a corpus (``models.corpus``)
    read onto ``grid`` and cut into frames; a split not in ``only`` is left empty."""
    if data.startswith(PREFIX):
        path = data[len(PREFIX) :]
        train, valid = (
            benchmark_split(path, s, pitch_lo, n_keys) if s in only else []
            for s in ("train", "valid")
        )
        return Rolls(train, valid, _summary(f"{PREFIX}{Path(path).name}", train, valid, 0))
    corpus = resolve_corpus(data, cache_dir=cache_root(), progress=progress)
    failed = 0
    splits: dict[str, list[np.ndarray]] = {}
    for split in ("train", "valid"):
        rolls = []
        for path in corpus.split(split) if split in only else ():
            try:
                roll = file_roll(path, grid, frame_ticks, pitch_lo, n_keys)
            except MidiFileError:
                failed += 1
                continue
            if len(roll):
                rolls.append(roll)
        splits[split] = rolls
    return Rolls(splits["train"], splits["valid"], _summary(corpus.name, *splits.values(), failed))


def _summary(name: str, train: list[np.ndarray], valid: list[np.ndarray], failed: int) -> dict:
    return {
        "name": name,
        "pieces": {"train": len(train), "valid": len(valid)},
        "frames": {"train": sum(map(len, train)), "valid": sum(map(len, valid))},
        "failed": failed,
    }


class PieceBatches:
    """Batches of whole pieces for one epoch, deterministic in (seed, epoch): shuffled,
    similar lengths together (less padding), each piece randomly transposed."""

    def __init__(self, rolls: list[np.ndarray], batch_size: int, transpose: int, seed: int):
        self.rolls, self.batch_size, self.transpose, self.seed = rolls, batch_size, transpose, seed
        # How far each piece can move and stay on the keyboard.
        self.room = []
        for r in rolls:
            keys = np.flatnonzero(r.any(axis=0))
            lo, hi = (keys[0], keys[-1]) if keys.size else (0, r.shape[1] - 1)
            self.room.append((-min(transpose, int(lo)), min(transpose, r.shape[1] - 1 - int(hi))))

    def plan(self, epoch: int) -> list[list[tuple[int, int]]]:
        """Per batch: (piece, shift) pairs."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.rolls)).tolist()
        shifts = [int(rng.integers(lo, hi + 1)) for lo, hi in self.room]
        group = self.batch_size * BUCKET
        batches = []
        for g in range(0, len(order), group):
            chunk = sorted(order[g : g + group], key=lambda i: len(self.rolls[i]))
            for b in range(0, len(chunk), self.batch_size):
                batches.append([(i, shifts[i]) for i in chunk[b : b + self.batch_size]])
        return [batches[i] for i in rng.permutation(len(batches))]

    def tensors(
        self, batch: list[tuple[int, int]], rows: range | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (R, T, K) float and mask (R, T) of ``rows`` of a batch (all of it unless
        told: one process's), padded to the batch's longest piece, so every process of a
        split batch takes the same windows; rows past the batch's end are empty (mask 0)."""
        rows = range(len(batch)) if rows is None else rows
        T = max(len(self.rolls[i]) for i, _ in batch)
        K = self.rolls[0].shape[1]
        x = np.zeros((len(rows), T, K), dtype=np.float32)
        mask = np.zeros((len(rows), T), dtype=np.float32)
        for b, (i, s) in enumerate(batch[rows.start : rows.stop]):
            r = self.rolls[i]
            x[b, : len(r), max(0, s) : K + min(0, s)] = r[:, max(0, -s) : K - max(0, s)]
            mask[b, : len(r)] = 1.0
        return torch.from_numpy(x), torch.from_numpy(mask)

    def frames_at(self, batch: list[tuple[int, int]]) -> np.ndarray:
        """(T,) how many pieces of the whole batch have a frame at each position: a window's
        loss is a mean over the batch's real frames, whichever process holds them."""
        lengths = np.asarray([len(self.rolls[i]) for i, _ in batch])
        return (lengths[:, None] > np.arange(lengths.max())).sum(0).astype(np.float64)


@torch.no_grad()
def rolls_nll(
    model: torch.nn.Module, rolls: list[np.ndarray], batch_size: int = 16, chunk: int = 256
) -> tuple[float, int]:
    """Mean frame NLL (nats) over every frame of ``rolls``, each piece from the empty state."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    batches = PieceBatches(rolls, batch_size, 0, 0)
    order = sorted(range(len(rolls)), key=lambda i: len(rolls[i]))
    total, frames = 0.0, 0
    for b in range(0, len(order), batch_size):
        x, mask = batches.tensors([(i, 0) for i in order[b : b + batch_size]])
        state = None
        for c in range(0, x.shape[1], chunk):  # chunks bound the NADE head's memory
            nll, state = model.frame_nll(x[:, c : c + chunk].to(device), state)
            nll = nll.cpu()
            total += float((nll.double() * mask[:, c : c + chunk]).sum())
        frames += int(mask.sum())
    model.train(was)
    return total / max(frames, 1), frames


class WeightAverage:
    """An exponential moving average of a model's weights; the decay ramps up from 0.1
    (``(1 + n) / (10 + n)``) so a short run is not averaged with its random start."""

    def __init__(self, model: torch.nn.Module, state: dict | None = None) -> None:
        self.weights = copy.deepcopy(state or model.state_dict())
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = min(AVERAGE, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.weights[k].mul_(d).add_(v, alpha=1 - d)
        self.updates += 1

    def nll(self, model: torch.nn.Module, rolls: list[np.ndarray]) -> float:
        """Valid NLL of the averaged weights (the model's own are put back)."""
        own = copy.deepcopy(model.state_dict())
        model.load_state_dict(self.weights)
        nll, _ = rolls_nll(model, rolls)
        model.load_state_dict(own)
        return nll


def marginal_nll(train: list[np.ndarray], valid: list[np.ndarray]) -> float:
    """Baseline: each key an independent coin with its training-set rate (add-one)."""
    on = sum(r.sum(axis=0, dtype=np.float64) for r in train)
    n = sum(len(r) for r in train)
    p = (on + 1) / (n + 2)
    roll = np.concatenate(valid).astype(np.float64)
    ll = roll @ np.log(p) + (1 - roll) @ np.log1p(-p)
    return float(-ll.mean())


def train_frames(
    cfg: TrainConfig, *, resume: bool = False, progress: bool = True, log: Any = None
) -> dict:
    """Train ``cfg.arch`` (a frames family) on ``cfg.data``; returns the final metrics."""
    say = log or (lambda msg: None)
    state = None
    if resume:
        state = resume_checkpoint(Path(cfg.out) / "ckpt.pt", say)
        cfg = resumed_config(state, cfg)
    return run_on_runtime(_train_frames, cfg, state, say, progress)


def _train_frames(
    cfg: TrainConfig, rt: Runtime, state: dict | None, say: Any, progress: bool
) -> dict:
    out = Path(cfg.out)
    ckpt_path = out / "ckpt.pt"
    if state:
        say(f"resuming {ckpt_path} at step {state['step']}")
    # One thread unless told: a recurrent step is a chain of small matmuls, where a second
    # thread's hand-offs cost more than it computes (30x slower on a busy 2-core machine).
    torch.set_num_threads(cfg.threads or 1)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    fam = family(cfg.arch)
    model = fam.build(state["model_config"] if state else {**cfg.model, "seq_len": cfg.block_size})
    model = model.to(rt.device)
    mc = model.config
    grid = Grid(GRID_TPQ)
    with rt.main_first():  # rank 0 builds the corpus cache, the others read it
        rolls: Rolls = load_rolls(
            cfg.data, grid, mc.frame_ticks, pitch_lo=mc.pitch_lo, n_keys=mc.n_keys,
            progress=progress,
        )  # fmt: skip
    s = rolls.summary
    say(
        f"{s['name']}: {s['pieces']['train']} train / {s['pieces']['valid']} valid pieces, "
        f"{s['frames']['train']:,} / {s['frames']['valid']:,} frames, {s['failed']} unreadable"
    )
    if not rolls.train or not rolls.valid:
        raise UserError(f"{cfg.data}: too few pieces for a train and a valid split")
    opt = make_optimizer(model, cfg)
    scaler = rt.scaler()
    # The benchmark files are transposed to C major/minor already: shifted copies would
    # teach keys their valid and test splits never hold, unless asked (cfg.bench_transpose).
    transpose = cfg.bench_transpose if cfg.data.startswith(PREFIX) else cfg.transpose
    if transpose != cfg.transpose:
        say(f"benchmark file: transposition +-{transpose} (its pieces share one key)")
    batches = PieceBatches(rolls.train, cfg.batch_size, transpose, cfg.seed)
    subset = rolls.valid if cfg.eval_pieces <= 0 else rolls.valid[: cfg.eval_pieces]
    # Split over processes, every batch is cfg.batch_size rows (an epoch's short last batch
    # padded with empty ones) so the shares are equal; one process takes the batch as it is.
    rows = rt.rows(cfg.batch_size) if rt.distributed else None

    step, epoch, batch_i, chunk_i, carried, size = 0, 0, 0, 0, None, 0  # size: rows of the batch
    running: float | None = None
    history: list[dict] = []
    best = {"nll": float("inf"), "step": 0, "weights": None, "bad": 0}
    average = WeightAverage(model)
    if state:
        r = state["resume"]
        model.load_state_dict(r["model"])
        opt.load_state_dict(r["optimizer"])
        if scaler.is_enabled() and r.get("scaler"):
            scaler.load_state_dict(r["scaler"])
        torch.set_rng_state(r["torch_rng"])
        step, epoch, batch_i, chunk_i = state["step"], r["epoch"], r["batch"], r["chunk"]
        if r["carried"]:  # the state of every row of the batch: this process takes its own
            size = r["carried"][0].shape[1]
            carried = tuple(rt.share(h.to(rt.device), cfg.batch_size, dim=1) for h in r["carried"])
        best = {**r["best"], "weights": state["model"]}
        average = WeightAverage(model, r["average"])
        average.updates = r["average_updates"]
        history = state.get("history", [])
        running = r.get("running")
    say(f"{cfg.arch} ({mc.head} head): {model.num_params():,} parameters on {rt.describe()}")
    net = rt.wrap(Loss(model, lambda m, xs, h: m.frame_nll(xs, h)))

    def whole(carried: tuple | None, batch: int) -> list | None:
        """The carried state of every row of the batch, as one process holds it (collective:
        every rank calls it)."""
        if carried is None:
            return None
        return [rt.gather(h, dim=1).narrow(1, 0, batch) for h in carried]

    def save(carried: list | None, metrics: dict | None = None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        blob = {
            "format": CHECKPOINT_FORMAT,
            "family": cfg.arch,
            "model_config": mc.to_dict(),
            "model": best["weights"] or average.weights,  # early stopping: the best average
            "step": step,
            "train_config": cfg.to_dict(),
            "grid": grid.to_dict(),
            "data": rolls.summary,
            "history": history,
            "metrics": metrics or {},
            "versions": versions(),
            "resume": {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "batch": batch_i,
                "chunk": chunk_i,
                "carried": carried,
                "best": {k: v for k, v in best.items() if k != "weights"},
                "average": average.weights,
                "average_updates": average.updates,
                "running": running,  # the logged loss's moving average goes on as it was
            },
        }
        save_atomic(blob, ckpt_path)

    def validate(loss: float, carried: list | None) -> None:  # rank 0's alone
        nll = average.nll(model, subset)
        improved = nll < best["nll"]
        if improved:
            best.update(nll=nll, step=step, weights=copy.deepcopy(average.weights), bad=0)
        else:
            best["bad"] += 1
        history.append({"step": step, "epoch": epoch, "train_nll": loss, "valid_nll": nll})
        say(
            f"step {step} (epoch {epoch}): train NLL/frame {loss:.4f}, valid {nll:.4f}"
            + (" *" if improved else "")
        )
        save(carried)

    t0 = time.perf_counter()
    model.train()
    bar = training_bar(cfg.steps, step, progress)
    rate = Throughput(cfg.batch_size * mc.seq_len, step)  # frames per step, padding included
    while step < cfg.steps and best["bad"] < PATIENCE:
        plan = batches.plan(epoch)
        while batch_i < len(plan) and step < cfg.steps and best["bad"] < PATIENCE:
            batch, size = plan[batch_i], len(plan[batch_i])
            x, mask = (rt.tensor(t) for t in batches.tensors(batch, rows))
            frames_at = batches.frames_at(batch)
            L = mc.seq_len
            while chunk_i * L < x.shape[1] and step < cfg.steps and best["bad"] < PATIENCE:
                window = slice(chunk_i * L, (chunk_i + 1) * L)
                xs, ms = x[:, window], mask[:, window]
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, cfg)
                with rt.autocast():
                    nll, carried = net(xs, carried)
                    # A mean over the whole batch's frames: DDP averages the ranks' gradients,
                    # so each rank's sum is scaled by the number of ranks.
                    loss = (nll.float() * ms).sum() / (frames_at[window].sum() / rt.world)
                rt.optimize(loss, opt, scaler, model.parameters(), cfg.grad_clip)
                if rt.main:  # only rank 0 validates and saves the average
                    average.update(model)
                carried = tuple(h.detach() for h in carried)
                step += 1
                chunk_i += 1
                value = rt.mean(loss)
                running = value if running is None else 0.95 * running + 0.05 * value
                bar.set_postfix(nll=f"{running:.3f}", epoch=epoch, frames_s=f"{rate(step):,.0f}")
                bar.update()
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    held = whole(carried, size)
                    if rt.main:
                        validate(running, held)
                    best["bad"] = rt.from_main(best["bad"])
            if chunk_i * L >= x.shape[1]:
                batch_i, chunk_i, carried = batch_i + 1, 0, None
        if batch_i >= len(plan):
            epoch, batch_i = epoch + 1, 0
    bar.close()
    held = whole(carried, size)
    if not rt.main:
        return {}
    rt.close()  # the end is rank 0's alone: the others have left the loop
    if not history or history[-1]["step"] != step:
        validate(running if running is not None else float("nan"), held)
    stopped = "early stopping" if best["bad"] >= PATIENCE else "step budget"

    say("scoring the whole valid split with the best weights ...")
    # The trained weights go back before the last save: a longer run resumes from them.
    trained = copy.deepcopy(model.state_dict())
    if best["weights"] is not None:
        model.load_state_dict(best["weights"])
    valid_nll, n_valid = rolls_nll(model, rolls.valid)
    model.load_state_dict(trained)
    metrics = {
        "valid_nll": valid_nll,
        "valid_frames": n_valid,
        "valid_pieces": len(rolls.valid),
        "marginal_valid_nll": marginal_nll(rolls.train, rolls.valid),
        "best_step": best["step"],
        "steps": step,
        "epochs": epoch,
        "stopped": stopped,
        "train_seconds": time.perf_counter() - t0,
        "params": model.num_params(),
        "frames_per_second": rate.overall(step),
        "device": str(rt.device),
        "precision": rt.precision,
        "processes": rt.world,
    }
    save(held, metrics)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2), what="metrics")
    say(
        f"valid NLL/frame {valid_nll:.4f} over {n_valid:,} frames (best step {best['step']}, "
        f"{stopped}; independent-keys baseline {metrics['marginal_valid_nll']:.4f}); "
        f"checkpoint {ckpt_path}"
    )
    return {**metrics, "checkpoint": str(ckpt_path)}


def valid_rolls_of(ckpt: dict) -> tuple[list[np.ndarray] | None, str]:
    """A frame checkpoint's validation pieces if its data can be read, else (None, reason)."""
    data = ckpt.get("train_config", {}).get("data")
    if not data:
        return None, "no data recorded"
    c = ckpt["model_config"]
    try:
        rolls = load_rolls(
            data,
            Grid(GRID_TPQ),
            int(c["frame_ticks"]),
            pitch_lo=int(c["pitch_lo"]),
            n_keys=int(c["n_keys"]),
            only=("valid",),
        )
    except (UserError, OSError) as exc:
        return None, str(exc)
    if not rolls.valid:
        return None, "empty valid split"
    return rolls.valid, f"valid frames of {rolls.summary['name']}"
