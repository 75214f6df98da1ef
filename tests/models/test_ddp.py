"""Two-process Gloo training under torchrun takes the steps one process takes.

``--batch-size`` is the global batch: every rank draws the same seeded windows (the piano
rolls: the same batch of whole pieces) and keeps its share, DDP averages the gradients, so
the loss trajectory of ``torchrun --nproc-per-node 2`` is a single process's up to the order
of float additions in the all-reduce (measured: relative differences below 1e-7 over these
steps, 1e-8 for the piano roll; the test allows 1e-5). Rank 0 alone writes the one
checkpoint, and a run resumes under another number of processes from its step. Every
registered family is run both ways for a few steps.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from antiphon.models.registry import FAMILIES  # noqa: E402
from antiphon.models.train import TrainConfig, load_checkpoint, train  # noqa: E402
from tests.checkpoints import tiny_training  # noqa: E402
from tests.families import TINY  # noqa: E402
from tests.synth import write_piece  # noqa: E402

RTOL = 1e-5
MODEL = {"n_layer": 1, "n_embd": 32, "n_head": 2, "dropout": 0.0}


def _config(corpus: Path, out: Path, steps: int) -> TrainConfig:
    # eval_every=1: every step in the history, the trajectory to compare; a flat schedule
    # after warmup (min_lr = lr), so runs of 6 and 10 steps share steps 1-6
    return tiny_training(corpus, out, steps, min_lr=1e-3, eval_every=1, model=MODEL)


def _args(cfg: TrainConfig) -> list[str]:
    """The command line of ``cfg`` (what the tests set: the rest are the defaults of both)."""
    sets = [a for k, v in cfg.model.items() for a in ("--set", f"{k}={v}")]
    return [
        "--arch", cfg.arch, "--data", cfg.data, "--out", cfg.out, "--steps", str(cfg.steps),
        "--batch-size", str(cfg.batch_size), "--block-size", str(cfg.block_size),
        "--lr", str(cfg.lr), "--warmup", str(cfg.warmup), "--min-lr", str(cfg.min_lr),
        "--eval-every", str(cfg.eval_every), "--eval-pieces", str(cfg.eval_pieces),
        "--transpose", str(cfg.transpose), "--threads", "1", "--device", "cpu", *sets,
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


def _losses(out: Path, key: str = "train_loss") -> dict[int, float]:
    return {h["step"]: h[key] for h in load_checkpoint(out / "ckpt.pt")["history"]}


def _agree(a: dict[int, float], b: dict[int, float], steps: Iterable[int]) -> None:
    for s in steps:
        assert b[s] == pytest.approx(a[s], rel=RTOL), (s, a[s], b[s])
    assert set(steps) <= set(b)


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


# -- the piano rolls: batches of whole pieces, the state carried between windows -------------
ROLL = {"n_hidden": 16, "nade_hidden": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def uneven_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """18 pieces of 1 to 6 bars (16 to 96 frames): 14 train pieces, so batches of 4 are
    padded to unequal lengths and an epoch ends on a batch of 2, which the second of two
    processes holds none of."""
    folder = tmp_path_factory.mktemp("uneven")
    for i in range(18):
        write_piece(folder / f"piece-{i:03d}.mid", 500 + i, bars=1 + i % 6)
    return folder


def _roll_config(corpus: Path, out: Path, steps: int) -> TrainConfig:
    # 16-frame windows: a batch takes 1 to 6 steps, the state carried between them; an
    # epoch is 19 steps; lr flat after warmup so runs of 22 and 28 steps share steps 1-22
    return tiny_training(
        corpus, out, steps, arch="pianoroll-lstm", block_size=16, lr=1e-3, min_lr=1e-3,
        eval_every=1, transpose=2, model=ROLL,
    )  # fmt: skip


def _roll_agree(reference: Path, run: Path, steps: range) -> None:
    for key in ("train_nll", "valid_nll"):  # the loss and the averaged weights' valid NLL
        _agree(_losses(reference, key), _losses(run, key), steps)


def test_piano_rolls_under_two_gloo_processes_follow_one_and_resume_under_either(
    uneven_corpus: Path, tmp_path: Path
) -> None:
    straight = tmp_path / "straight"
    train(_roll_config(uneven_corpus, straight, 28), progress=False)

    two = tmp_path / "two"
    done = _torchrun(2, *_args(_roll_config(uneven_corpus, two, 22)))
    _roll_agree(straight, two, range(1, 23))  # a whole epoch and its short last batch
    assert sorted(p.name for p in two.iterdir()) == ["ckpt.prev.pt", "ckpt.pt", "metrics.json"]
    assert done.stdout.count('"checkpoint"') == 1  # one rank reports
    assert "2 processes (gloo)" in done.stdout
    ckpt = load_checkpoint(two / "ckpt.pt")
    assert ckpt["metrics"]["processes"] == 2
    # It stopped inside the batch of 2 that opens epoch 1: the state of both its rows was
    # gathered from the process that held them (the other held padding), none of the padding.
    r = ckpt["resume"]
    assert (r["epoch"], r["batch"], r["chunk"]) == (1, 0, 3)
    assert [tuple(h.shape) for h in r["carried"]] == [(2, 2, 16)] * 2

    # Two processes' checkpoint, resumed by one: the steps go on as if never split (from the
    # trained weights: the final checkpoint once held the best average there instead).
    train(_roll_config(uneven_corpus, two, 28), resume=True, progress=False)
    _roll_agree(straight, two, range(1, 29))
    a, b = (load_checkpoint(d / "ckpt.pt")["resume"]["model"] for d in (straight, two))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)

    # One process's checkpoint in the short batch, resumed by two: each takes its rows.
    one = tmp_path / "one"
    train(_roll_config(uneven_corpus, one, 22), progress=False)
    _torchrun(2, *_args(_roll_config(uneven_corpus, one, 28)), "--resume")
    assert load_checkpoint(one / "ckpt.pt")["step"] == 28
    _roll_agree(straight, one, range(1, 29))


# -- every registered family: a few steps both ways -------------------------------------------
LOSS = {"frames": "train_nll"}  # the key of the per-step training loss in a run's history


# the transformer and pianoroll-lstm are followed further above
GANS = {"crnn-gan", "midinet", "musegan"}
# The GANs' first steps, past C-RNN-GAN's maximum-likelihood pre-training: both players update
# (C-RNN-GAN without its skip rule), so D's and G's losses follow each other.
# MuseGAN with its generator's BatchNorm (off by default).
GAN_MODEL = {"crnn-gan": {"pretrain_steps": 1, "skip_rule": False}, "musegan": {"batchnorm": True}}
# After the first update: a bias right before a BatchNorm has no gradient but float noise
# (1e-12 to 1e-8, from the order of additions), and Adam's first step moves it by about the
# learning rate whatever its size, so the runs part by float noise grown through the GAN:
# MidiNet's G loss by 3.5e-4 relative at its third step, 8.1e-4 at its fourth; C-RNN-GAN and
# MuseGAN by 1e-7. Without the whole batch, the first adversarial step is already 1.5e-2
# apart in MidiNet, 0.4 in C-RNN-GAN, 0.17 (G) in MuseGAN with BatchNorm.
GAN_RTOL = 5e-3


def _gan_losses(out: Path) -> dict[int, float]:
    """D's and G's losses of every step of a GAN run, from its log (keys 2s, 2s + 1; D has
    none while G pre-trains)."""
    rows = load_checkpoint(out / "ckpt.pt")["gan_log"]["rows"]
    pairs = [
        (2 * r["step"] + k, r[key]) for r in rows for k, key in enumerate(("d_loss", "g_loss"))
    ]
    return {i: v for i, v in pairs if v is not None}


@pytest.mark.parametrize("name", sorted(set(FAMILIES) - {"transformer", "pianoroll-lstm"}))
def test_every_family_trains_under_torchrun_as_in_one_process(
    name: str, synth_corpus: Path, tmp_path: Path
) -> None:
    def cfg(out: Path) -> TrainConfig:
        tiny = TINY[name]
        return tiny_training(
            synth_corpus, out, 3, arch=name, block_size=32, lr=tiny["lr"], eval_every=1,
            transpose=2, model={**tiny["model"], **GAN_MODEL.get(name, {})},
        )  # fmt: skip

    train(cfg(tmp_path / "one"), progress=False)
    done = _torchrun(2, *_args(cfg(tmp_path / "two")))
    assert "2 processes (gloo)" in done.stdout
    if name in GANS:
        # Whole-batch statistics (BatchNorm, minibatch discrimination, feature and mean
        # matching) read both processes' rows, or these would differ from the first step.
        one, two = _gan_losses(tmp_path / "one"), _gan_losses(tmp_path / "two")
        assert len(one) >= 5  # two adversarial steps at least
        first, *later = sorted(one)
        _agree(one, two, [first, first + 1])  # the first adversarial step: no update before it
        for k in later:
            assert two[k] == pytest.approx(one[k], rel=GAN_RTOL), (k, one[k], two[k])
        assert load_checkpoint(tmp_path / "two" / "ckpt.pt")["metrics"]["processes"] == 2
        return
    key = LOSS.get(FAMILIES[name].representation, "train_loss")
    _agree(_losses(tmp_path / "one", key), _losses(tmp_path / "two", key), range(1, 4))


@pytest.mark.parametrize("name", ["midinet", "musegan"])
def test_a_gan_resumes_under_another_number_of_processes(
    name: str, synth_corpus: Path, tmp_path: Path
) -> None:
    def cfg(out: Path, steps: int) -> TrainConfig:
        tiny = TINY[name]  # a flat rate after warmup: runs of 2 and 4 steps share steps 1-2
        return tiny_training(
            synth_corpus, out, steps, arch=name, lr=tiny["lr"], min_lr=tiny["lr"], eval_every=1,
            transpose=2, model={**tiny["model"], **GAN_MODEL.get(name, {})},
        )  # fmt: skip

    train(cfg(tmp_path / "straight", 4), progress=False)
    straight = _gan_losses(tmp_path / "straight")

    two = tmp_path / "two"  # two processes, then one
    _torchrun(2, *_args(cfg(two, 2)))
    train(cfg(two, 4), resume=True, progress=False)
    one = tmp_path / "one"  # one process, then two
    train(cfg(one, 2), progress=False)
    _torchrun(2, *_args(cfg(one, 4)), "--resume")
    for run in (two, one):
        assert load_checkpoint(run / "ckpt.pt")["step"] == 4
        losses = _gan_losses(run)
        assert sorted(losses) == sorted(straight)
        for k in straight:
            assert losses[k] == pytest.approx(straight[k], rel=GAN_RTOL), (run.name, k)
