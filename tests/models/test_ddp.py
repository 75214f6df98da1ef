"""Two-process Gloo training under torchrun takes the steps one process takes.

``--batch-size`` is the global batch: every rank draws the same seeded windows and keeps its
share, DDP averages the gradients, so the loss trajectory of ``torchrun --nproc-per-node 2``
is a single process's up to the order of float additions in the all-reduce (measured:
relative differences below 1e-7 over these steps; the test allows 1e-5). Rank 0 alone writes
the one checkpoint, and a run resumes under another number of processes from its step.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from antiphon.models.train import TrainConfig, load_checkpoint, train  # noqa: E402
from tests.checkpoints import tiny_training  # noqa: E402

RTOL = 1e-5
MODEL = {"n_layer": 1, "n_embd": 32, "n_head": 2, "dropout": 0.0}


def _config(corpus: Path, out: Path, steps: int) -> TrainConfig:
    # eval_every=1: every step in the history, the trajectory to compare; a flat schedule
    # after warmup (min_lr = lr), so runs of 6 and 10 steps share steps 1-6
    return tiny_training(corpus, out, steps, min_lr=1e-3, eval_every=1, model=MODEL)


def _args(cfg: TrainConfig) -> list[str]:
    sets = [a for k, v in MODEL.items() for a in ("--set", f"{k}={v}")]
    return [
        "--data", cfg.data, "--out", cfg.out, "--steps", str(cfg.steps),
        "--batch-size", str(cfg.batch_size), "--block-size", str(cfg.block_size),
        "--warmup", str(cfg.warmup), "--min-lr", str(cfg.min_lr),
        "--eval-every", "1", "--eval-pieces", "1", "--threads", "1", "--device", "cpu", *sets,
    ]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    port = _free_port()
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
        "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "antiphon", "train", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _losses(out: Path) -> dict[int, float]:
    return {h["step"]: h["train_loss"] for h in load_checkpoint(out / "ckpt.pt")["history"]}


def _agree(a: dict[int, float], b: dict[int, float], steps: range) -> None:
    for s in steps:
        assert b[s] == pytest.approx(a[s], rel=RTOL), (s, a[s], b[s])


def test_two_gloo_processes_follow_one_process_and_resume_under_either(
    synth_corpus: Path, tmp_path: Path
) -> None:
    straight = tmp_path / "straight"
    train(_config(synth_corpus, straight, 10), progress=False)
    reference = _losses(straight)

    two = tmp_path / "two"
    done = _torchrun(2, *_args(_config(synth_corpus, two, 6)))
    _agree(reference, _losses(two), range(1, 7))
    assert sorted(p.name for p in two.iterdir()) == ["ckpt.prev.pt", "ckpt.pt", "metrics.json"]
    assert done.stdout.count('"checkpoint"') == 1  # one rank reports
    assert "2 processes (gloo)" in done.stdout
    assert load_checkpoint(two / "ckpt.pt")["metrics"]["processes"] == 2

    # Two processes' checkpoint, resumed by one: the steps go on from 6 as if never split.
    train(_config(synth_corpus, two, 10), resume=True, progress=False)
    resumed = load_checkpoint(two / "ckpt.pt")
    assert resumed["step"] == 10
    _agree(reference, _losses(two), range(1, 11))

    # One process's checkpoint, resumed by two.
    one = tmp_path / "one"
    train(_config(synth_corpus, one, 6), progress=False)
    _torchrun(2, *_args(_config(synth_corpus, one, 10)), "--resume")
    assert load_checkpoint(one / "ckpt.pt")["step"] == 10
    _agree(reference, _losses(one), range(1, 11))


def test_a_global_batch_that_does_not_split_is_one_line(synth_corpus: Path, tmp_path: Path) -> None:
    args = _args(_config(synth_corpus, tmp_path / "odd", 2))
    args[args.index("--batch-size") + 1] = "3"
    port = _free_port()
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
        "-m", "antiphon", "train", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode != 0
    assert "--batch-size 3 (the global batch) does not split evenly over 2" in done.stderr
