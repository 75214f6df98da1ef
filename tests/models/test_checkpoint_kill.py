"""``kill -9`` of ``antiphon train`` in the middle of a checkpoint save, then ``--resume``.

The kill is made deterministic by a wrapper process: it replaces ``antiphon.atomic``'s
``_before_replace`` hook (a no-op in antiphon itself, called with the complete temporary file
just before it is renamed over the target) by one that tears the temporary file in half and
sends SIGKILL to its own process at the third save of ``ckpt.pt``, then runs the real
``antiphon`` command line. What a real crash would leave is what the test sees: a torn
temporary file beside the checkpoints written before it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from antiphon.atomic import TEMP_TAG, previous_of

torch = pytest.importorskip("torch")

WRAPPER = """
import os, runpy, signal, sys
import antiphon.atomic as atomic

saves = 0

def die_mid_save(tmp, target):
    global saves
    if target.name == "ckpt.pt":
        saves += 1
        if saves == int(os.environ["KILL_AT_SAVE"]):
            with open(tmp, "r+b") as f:
                f.truncate(os.path.getsize(tmp) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

atomic._before_replace = die_mid_save
sys.argv = ["antiphon", *sys.argv[1:]]
runpy.run_module("antiphon", run_name="__main__")
"""


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
    env = {**os.environ, "KILL_AT_SAVE": "3"}
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *_args(synth_corpus, out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
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
