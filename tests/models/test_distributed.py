"""Device, precision and sharding choices of models.distributed, without a GPU.

This machine has no GPU: CUDA and MPS are passed in as present or absent, so every choice
and every error a user can meet is checked, and the GPU's precisions run on the CPU (bf16
autocast for every family, fp16 with the loss scaler where the CPU has fp16 kernels). What
needs CUDA itself (NCCL, pinned-memory copies, CUDA autocast kernels) is not run here; the
multi-process paths run over Gloo in test_ddp.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from antiphon.errors import UserError  # noqa: E402
from antiphon.models.dataset import TokenSplit, WindowSampler  # noqa: E402
from antiphon.models.distributed import (  # noqa: E402
    Runtime,
    autocast_dtype,
    launch_env,
    resolve_device,
    resolve_precision,
    setup,
)
from antiphon.models.train import TrainConfig  # noqa: E402
from tests.checkpoints import tiny_training  # noqa: E402

CPU, CUDA0 = torch.device("cpu"), torch.device("cuda", 0)


def test_auto_takes_cuda_then_mps_then_the_cpu() -> None:
    assert resolve_device("auto", cuda=True, mps=True, gpus=1) == CUDA0
    assert resolve_device("auto", cuda=False, mps=True) == torch.device("mps")
    assert resolve_device("auto", cuda=False, mps=False) == CPU
    assert resolve_device("cpu", cuda=True, mps=True) == CPU


def test_each_torchrun_process_takes_the_gpu_of_its_local_rank() -> None:
    assert resolve_device("cuda", local_rank=3, cuda=True, gpus=4) == torch.device("cuda", 3)
    with pytest.raises(UserError, match="process 4 of this node has no GPU of its own"):
        resolve_device("cuda", local_rank=4, cuda=True, gpus=4)


def test_a_device_asked_for_and_missing_is_one_line_naming_the_fix() -> None:
    with pytest.raises(UserError, match=r"torch sees no CUDA GPU.*--device cpu"):
        resolve_device("cuda", cuda=False)
    with pytest.raises(UserError, match="no Apple MPS backend"):
        resolve_device("mps", mps=False)
    with pytest.raises(UserError, match="expected one of auto, cpu, cuda, mps"):
        resolve_device("tpu")


def test_auto_precision_is_bf16_or_fp16_on_a_gpu_and_fp32_elsewhere() -> None:
    assert resolve_precision("auto", CUDA0, bf16=True) == "bf16"
    assert resolve_precision("auto", CUDA0, bf16=False) == "fp16"
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    assert resolve_precision("fp16", CUDA0, bf16=True) == "fp16"
    assert resolve_precision("bf16", CPU) == "bf16"


def test_a_precision_the_device_lacks_is_one_line() -> None:
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(UserError, match="this GPU has no bfloat16; use fp16"):
        resolve_precision("bf16", CUDA0, bf16=False)
    with pytest.raises(UserError, match="expected one of"):
        resolve_precision("fp8", CPU)


def test_autocast_runs_in_the_chosen_dtype_and_only_fp16_scales_the_loss() -> None:
    assert autocast_dtype("fp32") is None
    assert autocast_dtype("bf16") is torch.bfloat16
    assert autocast_dtype("fp16") is torch.float16
    rt = Runtime(CPU, "bf16")
    lin = torch.nn.Linear(4, 4)
    with rt.autocast():
        assert lin(torch.ones(2, 4)).dtype is torch.bfloat16
    with Runtime(CPU, "fp32").autocast():
        assert lin(torch.ones(2, 4)).dtype is torch.float32
    assert not rt.scaler().is_enabled()


def test_torchrun_environment_is_read_and_a_plain_run_is_one_process() -> None:
    assert launch_env({}) == (0, 1, 0)
    assert launch_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (5, 8, 1)
    rt = setup("cpu", "auto", env={})
    assert (rt.main, rt.distributed, rt.precision) == (True, False, "fp32")
    assert rt.describe() == "cpu (fp32)"


def test_the_global_batch_splits_into_equal_contiguous_shares() -> None:
    shares = [Runtime(CPU, "fp32", rank=r, world=4).rows(8) for r in range(4)]
    assert [list(s) for s in shares] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    with pytest.raises(UserError, match=r"--batch-size 6 .* over 4 processes"):
        Runtime(CPU, "fp32", rank=0, world=4).rows(6)


def test_each_rank_reads_its_rows_of_the_windows_one_process_draws() -> None:
    tokens = np.arange(5000, dtype=np.int32) % 97
    split = TokenSplit(tokens, np.asarray([0, 2000, 5000]))
    whole = WindowSampler(split, 32, 7, None)
    parts = [WindowSampler(split, 32, 7, None) for _ in range(2)]
    for _ in range(3):
        full = whole.batch(6)
        got = np.concatenate([p.batch(6, range(3 * r, 3 * r + 3)) for r, p in enumerate(parts)])
        np.testing.assert_array_equal(full, got)
    # every rank stays at the same place in the stream: a checkpoint of rank 0 fits any rank
    assert parts[0].rng.bit_generator.state == whole.rng.bit_generator.state


def test_resuming_takes_this_commands_device_and_precision() -> None:
    from antiphon.models.train import resumed_config

    state = {"train_config": TrainConfig(device="cuda", precision="fp16", steps=5).to_dict()}
    cfg = resumed_config(state, TrainConfig(device="cpu", precision="fp32", steps=9))
    assert (cfg.device, cfg.precision, cfg.steps) == ("cpu", "fp32", 9)


@pytest.mark.parametrize("arch", ["transformer", "token-gru", "note-rnn", "pianoroll-gru"])
def test_every_family_trains_in_bf16_autocast_and_reports_its_throughput(
    arch: str, synth_corpus: Path, tmp_path: Path
) -> None:
    from antiphon.models.train import train

    small = {
        "transformer": {"n_layer": 1, "n_embd": 32, "n_head": 2},
        "token-gru": {"n_layer": 1, "n_embd": 32, "n_hidden": 32},
        "note-rnn": {},
        "pianoroll-gru": {},
    }[arch]
    cfg = tiny_training(
        synth_corpus, tmp_path / arch, 3, arch=arch, batch_size=2, block_size=32, warmup=1,
        eval_every=3, precision="bf16", model=small,
    )  # fmt: skip
    result = train(cfg, progress=False)
    assert result["precision"] == "bf16" and result["device"] == "cpu"
    assert np.isfinite(result["valid_nll"])
    rate = [k for k in result if k.endswith("_per_second")]
    assert rate and result[rate[0]] > 0


def test_a_batch_split_over_ranks_is_gathered_whole_and_shared_out_again() -> None:
    whole = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # (L, B=3, H)
    assert Runtime(CPU, "fp32").share(whole, 4, dim=1) is whole  # one process holds it all
    ranks = [Runtime(CPU, "fp32", rank=r, world=2) for r in range(2)]
    parts = [rt.share(whole, 4, dim=1) for rt in ranks]  # a short batch: 3 rows of 4
    assert [tuple(p.shape) for p in parts] == [(2, 2, 2), (2, 2, 2)]
    assert torch.equal(torch.cat(parts, 1)[:, :3], whole)
    assert not parts[1][:, 1].any()  # the padding row past the batch's end
    assert Runtime(CPU, "fp32").gather(whole, dim=1) is whole
    assert Runtime(CPU, "fp32").from_main(7) == 7


def test_each_rank_takes_its_rows_of_a_batch_of_whole_pieces() -> None:
    from antiphon.models.frames_train import PieceBatches

    rng = np.random.default_rng(0)
    rolls = [(rng.random((n, 8)) < 0.3).astype(np.uint8) for n in (5, 9, 3)]
    batches = PieceBatches(rolls, 4, 0, 0)
    batch = [(0, 0), (1, 0), (2, 0)]  # an epoch's short last batch: 3 pieces of 4 rows
    x, mask = batches.tensors(batch)
    shares = [batches.tensors(batch, Runtime(CPU, "fp32", rank=r, world=2).rows(4)) for r in (0, 1)]
    assert all(s[0].shape == (2, 9, 8) for s in shares)  # every rank pads to the longest piece
    np.testing.assert_array_equal(torch.cat([s[0] for s in shares])[:3], x)
    np.testing.assert_array_equal(torch.cat([s[1] for s in shares])[:3], mask)
    assert not shares[1][1][1].any()  # the fourth row is padding
    # the frames of the whole batch at each position, whoever holds them: the loss's divisor
    np.testing.assert_array_equal(batches.frames_at(batch), mask.sum(0))


@pytest.mark.parametrize("arch", ["transformer", "pianoroll-gru"])
def test_fp16_scales_the_loss_and_a_resumed_run_keeps_the_scale(
    arch: str, synth_corpus: Path, tmp_path: Path
) -> None:
    """The loss scaler at work, on the CPU: fp16 autocast runs there for the transformer and
    the GRU (oneDNN has no fp16 LSTM); ``setup`` allows fp16 only on a GPU, so the Runtime is
    made here as ``setup`` makes it on one."""
    from antiphon.models.frames_train import _train_frames
    from antiphon.models.train import _train_tokens, resume_checkpoint, resumed_config

    body = _train_frames if arch.startswith("pianoroll") else _train_tokens
    small = {"transformer": {"n_layer": 1, "n_embd": 32, "n_head": 2}, "pianoroll-gru": {}}[arch]
    rt = Runtime(CPU, "fp16")
    assert rt.scaler().is_enabled()

    def run(steps: int, state: dict | None = None) -> tuple[dict, dict]:
        cfg = tiny_training(
            synth_corpus, tmp_path, steps, arch=arch, batch_size=2, block_size=32, eval_every=2,
            model=small,
        )  # fmt: skip
        if state is not None:
            cfg = resumed_config(state, cfg)
        body(cfg, rt, state, lambda msg: None, False)
        ckpt = resume_checkpoint(tmp_path / "ckpt.pt")
        return ckpt, ckpt.get("resume", ckpt)["scaler"]

    ckpt, scaler = run(4)
    assert np.isfinite(ckpt["metrics"]["valid_nll"]) and ckpt["metrics"]["precision"] == "fp16"
    assert scaler["scale"] == 2.0**16 and scaler["_growth_tracker"] == 4  # 4 finite steps
    _, scaler = run(6, ckpt)
    assert scaler["_growth_tracker"] == 6  # the resumed run counted on from 4


@pytest.mark.parametrize("arch", ["crnn-gan", "midinet", "musegan"])
def test_a_gan_trains_in_bf16_autocast_and_reports_its_throughput(
    arch: str, synth_corpus: Path, tmp_path: Path
) -> None:
    from antiphon.models.train import train
    from tests.families import TINY

    extra = {"crnn-gan": {"pretrain_steps": 1}, "musegan": {"batchnorm": True}}.get(arch, {})
    cfg = tiny_training(
        synth_corpus, tmp_path / arch, 3, arch=arch, lr=TINY[arch]["lr"], eval_every=3,
        precision="bf16", model={**TINY[arch]["model"], **extra},
    )  # fmt: skip
    result = train(cfg, progress=False)
    assert result["precision"] == "bf16"
    rate = [k for k in result if k.endswith("_per_second")]
    assert rate and result[rate[0]] > 0
    rows = load_gan_rows(tmp_path / arch)
    assert rows[-1]["step"] == 3 and np.isfinite([rows[-1]["d_loss"], rows[-1]["g_loss"]]).all()


def load_gan_rows(out: Path) -> list[dict]:
    from antiphon.models.train import load_checkpoint

    return load_checkpoint(out / "ckpt.pt")["gan_log"]["rows"]


@pytest.mark.parametrize("arch", ["midinet", "musegan"])
def test_each_gan_player_scales_its_fp16_loss_and_a_resumed_run_keeps_both_scales(
    arch: str, synth_corpus: Path, tmp_path: Path
) -> None:
    """fp16 autocast on the CPU (convolutions run there), the Runtime made as ``setup``
    makes it on a GPU. Each player has its own scaler: at the start of training an fp16
    backward overflows at 2^16 now and then, and the scaler of that player alone backs off.
    A run stopped at step 4 and resumed to 6 (a flat rate after warmup: both share steps 1-4)
    ends with the scalers and losses of a straight run."""
    from antiphon.models import gan_train, musegan_train
    from antiphon.models.midinet_train import MidiNetRecipe
    from antiphon.models.train import resume_checkpoint, resumed_config
    from tests.families import TINY

    rt = Runtime(CPU, "fp16")
    extra = {"batchnorm": True} if arch == "musegan" else {}

    def run(out: Path, steps: int, state: dict | None = None) -> dict:
        cfg = tiny_training(
            synth_corpus, out, steps, arch=arch, lr=TINY[arch]["lr"], min_lr=TINY[arch]["lr"],
            eval_every=2, model={**TINY[arch]["model"], **extra},
        )  # fmt: skip
        if state is not None:
            cfg = resumed_config(state, cfg)
        if arch == "musegan":
            musegan_train._train(cfg, rt, state, lambda msg: None, False)
        else:
            gan_train._train(MidiNetRecipe(), cfg, rt, state, lambda msg: None, False)
        return resume_checkpoint(out / "ckpt.pt")

    straight = run(tmp_path / "straight", 6)
    assert straight["metrics"]["precision"] == "fp16"
    assert np.isfinite([r["d_loss"] for r in straight["gan_log"]["rows"]]).all()
    assert all(straight[k]["scale"] <= 2.0**16 for k in ("scaler", "d_scaler"))
    resumed = run(tmp_path / "resumed", 6, run(tmp_path / "resumed", 4))
    for key in ("scaler", "d_scaler"):
        assert resumed[key] == straight[key]
    assert [r["g_loss"] for r in resumed["gan_log"]["rows"]] == [
        r["g_loss"] for r in straight["gan_log"]["rows"]
    ]
