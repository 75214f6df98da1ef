"""``kill -9`` of ``antiphon train`` in the middle of a checkpoint save, then ``--resume``.

The real command line runs in a wrapper process (``tests.killing``) that tears the third
save of ``ckpt.pt`` in half and sends SIGKILL to itself: a torn temporary file beside the
checkpoints written before it, as a real crash would leave."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from antiphon.atomic import TEMP_TAG, previous_of
from tests.killing import ANTIPHON, run_killed

torch = pytest.importorskip("torch")


def _args(data: Path, out: Path) -> list[str]:
    return [
        "train", "--data", str(data), "--out", str(out), "--steps", "40", "--eval-every", "10",
        "--eval-pieces", "2", "--batch-size", "2", "--block-size", "32", "--warmup", "2",
        "--threads", "1", "--set", "n_layer=1", "--set", "n_embd=32", "--set", "n_head=2",
    ]  # fmt: skip


def _antiphon(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "antiphon", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_kill_during_a_checkpoint_save_resumes_from_the_last_complete_one(
    synth_corpus: Path, tmp_path: Path
) -> None:
    from antiphon.models.train import load_checkpoint

    out = tmp_path / "run"
    done = run_killed("ckpt.pt", 3, ANTIPHON, *_args(synth_corpus, out), tear=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    ckpt = out / "ckpt.pt"
    # The save at step 30 died half-written; the two before it are complete.
    assert load_checkpoint(ckpt)["step"] == 20
    assert load_checkpoint(previous_of(ckpt))["step"] == 10
    assert [p for p in out.iterdir() if TEMP_TAG in p.name]  # what the crash left

    _antiphon(*_args(synth_corpus, out), "--resume")
    resumed = load_checkpoint(ckpt)
    assert resumed["step"] == 40 and resumed["metrics"]["steps"] == 40
    assert not [p for p in out.iterdir() if TEMP_TAG in p.name]  # the next save removed it

    # And resuming is exact: the same weights as a run that was never killed.
    _antiphon(*_args(synth_corpus, tmp_path / "straight"))
    straight = load_checkpoint(tmp_path / "straight" / "ckpt.pt")
    assert straight["model"].keys() == resumed["model"].keys()
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])


def test_resume_falls_back_to_the_previous_checkpoint(synth_corpus: Path, tmp_path: Path) -> None:
    from antiphon.models.train import resume_checkpoint, save_atomic

    path = tmp_path / "ckpt.pt"
    save_atomic({"format": "antiphon-checkpoint/1", "step": 10}, path)
    save_atomic({"format": "antiphon-checkpoint/1", "step": 20}, path)
    path.write_bytes(path.read_bytes()[:50])  # damaged after the fact (a bad disk)
    said: list[str] = []
    assert resume_checkpoint(path, said.append)["step"] == 10
    assert "not a readable checkpoint" in said[0] and "ckpt.prev.pt" in said[0]
