"""Training the note RNN: a corpus read as notes, windows of notes, the three-head loss.

Every file is read through ``models.midi.notes.read_performance`` on the default tokenizer's
grid (what the daemon hears), its notes taken in (start, pitch) order as (pitch, step, duration)
in grid ticks, and cached per corpus. Windows of ``block_size + 1`` notes are drawn from the
concatenated split, across piece boundaries as the tutorial does (a piece's first note has
step 0), transposed at random. The optimizer, schedule, clipping, checkpoint (the format of
``models.train``, with the ``grid`` instead of a tokenizer) and ``--resume`` are those of
token training. Validation reads each valid piece in one pass with the state carried, as the
daemon does, and sets the loss terms beside baselines fitted on the training split: a pitch
bigram (smoothing chosen on valid) and predicting the mean step and duration.
"""

from __future__ import annotations

import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from antiphon.atomic import atomic_file, write_text
from antiphon.errors import UserError
from antiphon.models.corpus import SPLITS, Corpus, resolve_corpus
from antiphon.models.dataset import TokenSplit, cache_root, corpus_cache_key, progress_interval
from antiphon.models.distributed import Loss, Runtime, Throughput
from antiphon.models.midi.notes import Grid, Performance, read_performance
from antiphon.models.nll import Bigram
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

NOTE_GRID = Grid(tpq=8)  # the default tokenizer's grid: 1/8 beat, pitches 21..108, 32 velocities
_CACHE_FORMAT = 1


# -- the corpus as notes ---------------------------------------------------------------------
def performance_notes(perf: Performance) -> np.ndarray:
    """(N, 3) int32: pitch, step and duration in ticks, notes in (start, pitch) order."""
    notes = sorted(perf.notes, key=lambda n: (n.start, n.pitch))
    starts = np.asarray([n.start for n in notes], dtype=np.int64)
    ends = np.asarray([n.end if n.end is not None else n.start + 1 for n in notes], np.int64)
    steps = np.diff(starts, prepend=starts[:1])  # the first note follows nothing: step 0
    pitches = np.asarray([n.pitch for n in notes], dtype=np.int64)
    return np.stack([pitches, steps, ends - starts], axis=1).astype(np.int32)


@dataclass
class NoteSplit:
    notes: np.ndarray  # (N, 3) int32 ticks, all pieces concatenated
    offsets: np.ndarray  # (P+1,) start of each piece, last = N

    @property
    def pieces(self) -> int:
        return len(self.offsets) - 1

    def piece(self, i: int) -> np.ndarray:
        return self.notes[self.offsets[i] : self.offsets[i + 1]]


@dataclass
class NoteCorpus:
    splits: dict[str, NoteSplit]
    failed: int
    summary: dict

    def __getitem__(self, split: str) -> NoteSplit:
        return self.splits[split]


def _read_one(args: tuple[dict, str]) -> np.ndarray | None:
    grid, path = args
    try:
        return performance_notes(read_performance(path, Grid.from_dict(grid)))
    except Exception:  # an unreadable file is skipped and counted, never fatal
        return None


def _cache_key(corpus: Corpus, grid: Grid) -> str:
    return corpus_cache_key(
        corpus, f"notes/{_CACHE_FORMAT}", json.dumps(grid.to_dict(), sort_keys=True)
    )


def read_note_corpus(
    corpus: Corpus, grid: Grid, cache_dir: Path | None = None, *, progress: bool = True
) -> NoteCorpus:
    """Every file of a corpus as notes, read once (later calls load the cached arrays)."""
    cache = None if cache_dir is None else cache_dir / f"notes-{_cache_key(corpus, grid)}.npz"
    if cache is not None and cache.exists():
        z = np.load(cache)
        meta = json.loads(bytes(z["meta"]).decode())
        splits = {s: NoteSplit(z[f"{s}_notes"], z[f"{s}_offsets"]) for s in SPLITS}
        return NoteCorpus(splits, meta["failed"], meta["summary"])
    from tqdm import tqdm

    splits, failed = {}, 0
    workers = min(os.cpu_count() or 1, 4)
    for split in SPLITS:
        jobs = [(grid.to_dict(), str(p)) for p in corpus.split(split)]
        bar = tqdm(
            total=len(jobs),
            desc=f"reading {split}",
            unit="file",
            disable=not progress,
            mininterval=progress_interval(),
        )
        pieces = []
        with ProcessPoolExecutor(workers) if len(jobs) >= 16 and workers > 1 else _Serial() as pool:
            for notes in pool.map(_read_one, jobs, chunksize=8):
                bar.update()
                if notes is None or len(notes) == 0:
                    failed += 1
                else:
                    pieces.append(notes)
        bar.close()
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
        notes = np.concatenate(pieces) if pieces else np.zeros((0, 3), dtype=np.int32)
        splits[split] = NoteSplit(notes, offsets)
    summary = {
        **corpus.summary(),
        "unreadable": failed,
        "notes": {k: len(v.notes) for k, v in splits.items()},
        "pieces": {k: v.pieces for k, v in splits.items()},
    }
    result = NoteCorpus(splits, failed, summary)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for k, v in splits.items():
            arrays[f"{k}_notes"], arrays[f"{k}_offsets"] = v.notes, v.offsets
        arrays["meta"] = np.frombuffer(
            json.dumps({"failed": failed, "summary": summary}).encode(), dtype=np.uint8
        )
        with atomic_file(cache, what="note cache") as f:
            np.savez(f, **arrays)
    return result


class _Serial:
    """``ProcessPoolExecutor``'s ``map`` in this process (a few files are not worth a pool)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, jobs, chunksize: int = 1):  # type: ignore[no-untyped-def]
        return map(fn, jobs)


def features(notes: np.ndarray, tpq: int, max_beats: float) -> tuple[torch.Tensor, ...]:
    """(..., 3) tick notes -> pitch (int64), step and duration (float32 beats, clipped)."""
    pitch = torch.from_numpy(notes[..., 0].astype(np.int64))
    beats = np.clip(notes[..., 1:].astype(np.float32) / tpq, 0.0, max_beats)
    return pitch, torch.from_numpy(beats[..., 0].copy()), torch.from_numpy(beats[..., 1].copy())


class NoteWindows:
    """Random (block+1)-note windows of a split, transposed at random within the grid."""

    def __init__(self, split: NoteSplit, block: int, seed: int, transpose: int, grid: Grid):
        if len(split.notes) < 2:
            raise ValueError("the training split holds fewer than two notes")
        self.split, self.block, self.transpose, self.grid = split, block, transpose, grid
        self.rng = np.random.default_rng(seed)

    def window(self) -> np.ndarray:
        notes, n = self.split.notes, self.block + 1
        if len(notes) <= n:
            w = np.resize(notes, (n, 3))
        else:
            start = int(self.rng.integers(0, len(notes) - n + 1))
            w = notes[start : start + n].copy()
        k = int(self.rng.integers(-self.transpose, self.transpose + 1))
        shifted = w[:, 0] + k
        if shifted.min() >= self.grid.pitch_lo and shifted.max() <= self.grid.pitch_hi:
            w[:, 0] = shifted
        return w

    def batch(self, size: int, rows: range | None = None) -> np.ndarray:
        """``size`` windows drawn, ``rows`` of them kept (a rank's share, as WindowSampler)."""
        rows = range(size) if rows is None else rows
        windows = [self.window() for _ in range(size)]
        return np.stack([w for i, w in enumerate(windows) if i in rows])  # (B, block+1, 3)


# -- validation ------------------------------------------------------------------------------
TERMS = ("pitch", "step", "duration", "total")


@torch.no_grad()
def evaluate_notes(
    model: torch.nn.Module, split: NoteSplit, tpq: int, pieces: int | None = None
) -> dict[str, float]:
    """Mean loss terms per predicted note over whole pieces, each read in one pass."""
    was = model.training
    model.eval()
    sums, count = dict.fromkeys(TERMS, 0.0), 0
    n = split.pieces if pieces is None else min(pieces, split.pieces)
    for i in range(n):
        notes = split.piece(i)
        if len(notes) < 2:
            continue
        device = next(model.parameters()).device
        p, s, d = (t.to(device) for t in features(notes[None], tpq, model.config.max_beats))
        terms = model.loss_terms(p, s, d)
        for k in TERMS:
            sums[k] += float(terms[k]) * (len(notes) - 1)
        count += len(notes) - 1
    model.train(was)
    return {k: v / max(count, 1) for k, v in sums.items()} | {"notes": count}


def baselines(data: NoteCorpus, tpq: int, max_beats: float, pitches: int) -> dict[str, float]:
    """What the model must beat: a pitch bigram, and the training split's mean step and
    duration as constant predictions (their squared error on valid)."""
    train, valid = data["train"], data["valid"]
    as_tokens = {
        k: TokenSplit(v.notes[:, 0].astype(np.int64), v.offsets) for k, v in data.splits.items()
    }
    nll, alpha = Bigram(pitches).fit(as_tokens["train"]).best_nll(as_tokens["valid"])
    out: dict[str, float] = {"bigram_valid_nll": nll, "bigram_alpha": alpha}
    for col, name in ((1, "step"), (2, "duration")):
        mean = float(np.clip(train.notes[:, col] / tpq, 0, max_beats).mean())
        # the same predictions as the model's: every note of a piece but its first
        firsts = valid.offsets[:-1]
        keep = np.ones(len(valid.notes), dtype=bool)
        keep[firsts[firsts < len(keep)]] = False
        target = np.clip(valid.notes[keep, col] / tpq, 0, max_beats)
        out[f"mean_{name}_valid_mse"] = float(((target - mean) ** 2).mean()) if len(target) else 0.0
    return out


# -- the training loop -----------------------------------------------------------------------
def train_notes(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, log: Any = None):
    """Train ``cfg.arch`` (a notes family) on ``cfg.data``; returns the final metrics."""
    say = log or (lambda msg: None)
    state = None
    if resume:
        state = resume_checkpoint(Path(cfg.out) / "ckpt.pt", say)
        cfg = resumed_config(state, cfg)
    return run_on_runtime(_train_notes, cfg, state, say, progress)


def _train_notes(cfg: TrainConfig, rt: Runtime, state: dict | None, say: Any, progress: bool):
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
        data = read_note_corpus(corpus, grid, cache_root() / "notes", progress=progress)
    say(
        f"corpus {corpus.name}: {data.summary['pieces']['train']} train / "
        f"{data.summary['pieces']['valid']} valid pieces, "
        f"{data.summary['notes']['train']:,} train notes, {data.failed} unreadable files skipped"
    )
    if data["train"].pieces == 0 or data["valid"].pieces == 0:
        raise UserError(f"{cfg.data}: too few readable MIDI files for a train and a valid split")

    model_cfg = {**cfg.model, "block_size": cfg.block_size}
    model = fam.build(state["model_config"] if state else model_cfg).to(rt.device)
    opt = make_optimizer(model, cfg)
    scaler = rt.scaler()
    rows = rt.rows(cfg.batch_size)
    windows = NoteWindows(data["train"], model.config.block_size, cfg.seed, cfg.transpose, grid)
    step, history = 0, []
    if state:
        step, history = restore(state, model, opt, windows.rng, scaler)
    say(f"{cfg.arch}: {model.num_params():,} parameters on {rt.describe()}")
    net = rt.wrap(Loss(model, lambda m, *batch: m.loss_terms(*batch)))

    def save(metrics: dict | None = None) -> None:
        fields = {"grid": grid.to_dict(), "data": data.summary, "history": history}
        save_on_main(rt, ckpt_path, cfg, model, opt, step, windows.rng, scaler, metrics, **fields)

    model.train()
    bar = training_bar(cfg.steps, step, progress)
    rate = Throughput(cfg.batch_size * model.config.block_size, step)
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        batch = windows.batch(cfg.batch_size, rows)
        p, s, d = (rt.tensor(t) for t in features(batch, grid.tpq, model.config.max_beats))
        with rt.autocast():
            terms = net(p, s, d)
        rt.optimize(terms["total"], opt, scaler, model.parameters(), cfg.grad_clip)
        step += 1
        loss = rt.mean(terms["total"])
        bar.set_postfix(loss=f"{loss:.3f}", notes_s=f"{rate(step):,.0f}", refresh=False)
        bar.update()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if rt.main:
                v = evaluate_notes(model, data["valid"], grid.tpq, cfg.eval_pieces)
                history.append({"step": step, "train_loss": loss, "valid_loss_subset": v["total"]})
                bar_log(bar, progress, say)(
                    f"step {step}: train loss {loss:.4f}, valid loss {v['total']:.4f} (pitch "
                    f"NLL {v['pitch']:.3f}, step {v['step']:.4f}, duration {v['duration']:.4f})"
                )
            save()
    bar.close()
    if not rt.main:
        return {}
    rt.close()  # the end is rank 0's alone: the others have left the loop

    say("scoring the whole valid split ...")
    v = evaluate_notes(model, data["valid"], grid.tpq)
    base = baselines(data, grid.tpq, model.config.max_beats, model.config.pitches)
    metrics = {
        "valid_loss": v["total"],
        "valid_nll": v["pitch"],  # pitch nats per note
        "valid_step_loss": v["step"],
        "valid_duration_loss": v["duration"],
        "valid_notes": v["notes"],
        **base,
        "nll_unit": "nats/note (pitch)",
        "steps": step,
        "params": model.num_params(),
        "notes_per_second": rate.overall(step),
        "device": str(rt.device),
        "precision": rt.precision,
        "processes": rt.world,
    }
    save(metrics)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2), what="metrics")
    say(
        f"valid loss {v['total']:.4f} over {v['notes']:,} notes: pitch NLL {v['pitch']:.4f} "
        f"(bigram {base['bigram_valid_nll']:.4f}), step {v['step']:.4f} "
        f"(mean {base['mean_step_valid_mse']:.4f}), duration {v['duration']:.4f} "
        f"(mean {base['mean_duration_valid_mse']:.4f}); checkpoint {ckpt_path}"
    )
    return {**metrics, "checkpoint": str(ckpt_path)}
