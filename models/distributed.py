"""Where training runs: the device, the precision, and the processes of a torchrun launch.

One ``Runtime`` per training process, built by ``setup`` and used alike by every trainer:

- ``--device auto|cpu|cuda|mps``: auto takes CUDA, then Apple's MPS, then the CPU. Under
  torchrun each process takes the GPU of its ``LOCAL_RANK``.
- ``--precision auto|fp32|bf16|fp16``: autocast around the forward pass and the loss (the
  weights, the optimizer and the checkpoint stay fp32); fp16 also scales the loss
  (``torch.amp.GradScaler``) so small gradients do not flush to zero. auto is bf16 on a GPU
  that has it, fp16 on an older CUDA GPU, fp32 elsewhere (CPU autocast only pays with AMX).
- Several processes (``WORLD_SIZE`` > 1, set by torchrun): ``torch.distributed`` with env://
  rendezvous, NCCL on CUDA and Gloo otherwise, the model wrapped in DistributedDataParallel.
  ``--batch-size`` stays the *global* batch: every rank draws the same windows from the same
  seeded stream and keeps its own contiguous slice of rows (``rows``), so N processes take the
  steps one process with the same batch takes, and a run resumes under any number of them.
  Rank 0 alone writes checkpoints, metrics, log lines and the progress bar. State that lives
  per row (a recurrent state carried between windows) is gathered whole into the checkpoint
  and shared out again on resume (``gather``, ``share``).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from antiphon.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Rank 0 builds the corpus and token caches while the others wait at a barrier: the music21
# corpus takes about 70 minutes on 2 cores, past Gloo's and NCCL's default 30.
TIMEOUT = datetime.timedelta(hours=4)


def resolve_device(
    name: str,
    *,
    local_rank: int = 0,
    cuda: bool | None = None,
    mps: bool | None = None,
    gpus: int | None = None,
) -> torch.device:
    """``--device`` as a torch device; ``cuda``/``mps``/``gpus`` override what is detected
    (tests). A device that is asked for and missing is a UserError naming the fix."""
    if name not in DEVICES:
        raise UserError(f"--device {name}: expected one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available() if cuda is None else cuda
    mps = _mps_available() if mps is None else mps
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda":
        if not cuda:
            raise UserError(
                "--device cuda: torch sees no CUDA GPU (a CPU-only torch build, or no driver); "
                "install a CUDA build of torch or pass --device cpu"
            )
        gpus = torch.cuda.device_count() if gpus is None else gpus
        if local_rank >= gpus:
            raise UserError(
                f"--device cuda: process {local_rank} of this node has no GPU of its own "
                f"({gpus} visible); start at most {gpus} processes per node"
            )
        return torch.device("cuda", local_rank)
    if name == "mps":
        if not mps:
            raise UserError("--device mps: this torch has no Apple MPS backend; pass --device cpu")
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_precision(name: str, device: torch.device, *, bf16: bool | None = None) -> str:
    """``--precision`` for ``device``: "fp32", "bf16" or "fp16". ``bf16`` overrides whether
    the GPU supports bfloat16 (tests)."""
    if name not in PRECISIONS:
        raise UserError(f"--precision {name}: expected one of {', '.join(PRECISIONS)}")
    if device.type == "cuda" and bf16 is None:
        bf16 = torch.cuda.is_bf16_supported()
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if bf16 else "fp16"
        return "fp32"
    if name == "fp16" and device.type == "cpu":
        raise UserError("--precision fp16 needs a GPU; on the CPU use bf16 or fp32")
    if name == "bf16" and device.type == "cuda" and not bf16:
        raise UserError("--precision bf16: this GPU has no bfloat16; use fp16")
    return name


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype autocast computes in, None for fp32 (no autocast)."""
    return _DTYPES.get(precision)


@dataclass
class Runtime:
    device: torch.device
    precision: str
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def describe(self) -> str:
        where = f"{self.device} ({self.precision})"
        if self.distributed:
            backend = torch.distributed.get_backend()
            return f"{where}, {self.world} processes ({backend}), global batch split across them"
        return where

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = autocast_dtype(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled for fp16 only (bf16 has fp32's range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def rows(self, batch: int) -> range:
        """This rank's rows of a global batch: a contiguous slice, equal for every rank."""
        if batch % self.world:
            raise UserError(
                f"--batch-size {batch} (the global batch) does not split evenly over "
                f"{self.world} processes; pass a multiple of {self.world}"
            )
        per = batch // self.world
        return range(self.rank * per, (self.rank + 1) * per)

    def optimize(
        self,
        loss: torch.Tensor,
        opt: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        params: Any,
        clip: float,
        *,
        average: bool = False,
    ) -> None:
        """One optimizer step on ``loss``: backward (scaled for fp16; DDP averages the
        gradients over the ranks meanwhile, or with ``average`` this does, for a module DDP
        does not wrap), clipping of the true gradients (none where ``clip`` is 0), step.
        Averaged while still scaled: an overflow on one rank then reaches every rank, and
        each skips the step alike."""
        params = list(params)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if average:
            self.average_gradients(params)
        scaler.unscale_(opt)
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(opt)
        scaler.update()

    def tensor(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A batch on the device; through pinned memory on CUDA so the copy is asynchronous."""
        t = (
            array
            if isinstance(array, torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(array))
        )
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training step calls: DDP around ``model`` when distributed."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def average_gradients(self, params: Any) -> None:
        """Every rank's gradients replaced by their mean over the ranks, in one all-reduce:
        what DDP does during backward, for the adversarial families, which it cannot wrap
        (their step backpropagates G's loss through D, whose gradients there are dropped,
        and WGAN-GP differentiates D's gradient, which DDP does not support: pytorch issues
        63812 and 63929). Call it between backward and clipping; parameters without a
        gradient are left without one, alike on every rank (the same code ran on each)."""
        if not self.distributed:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, value: torch.Tensor) -> float:
        """A scalar averaged over the ranks (the loss of the global batch, for the log)."""
        if not self.distributed:
            return float(value.detach())
        v = value.detach().float().reshape(1).clone()
        torch.distributed.all_reduce(v)
        return float(v) / self.world

    def gather(self, share: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """The whole batch from every rank's ``rows`` of it (rank order along ``dim``): what
        one process would hold, for a checkpoint that resumes under any number."""
        if not self.distributed:
            return share
        parts = [torch.empty_like(share) for _ in range(self.world)]
        torch.distributed.all_gather(parts, share.contiguous())
        return torch.cat(parts, dim)

    def share(self, whole: torch.Tensor, batch: int, dim: int = 0) -> torch.Tensor:
        """This rank's ``rows(batch)`` of a whole-batch tensor (the inverse of ``gather``);
        rows past its end, the empty padding of a short batch, are zeros."""
        if not self.distributed:
            return whole
        rows = self.rows(batch)
        if (missing := rows.stop - whole.shape[dim]) > 0:
            pad = list(whole.shape)
            pad[dim] = missing
            whole = torch.cat([whole, whole.new_zeros(pad)], dim)
        return whole.narrow(dim, rows.start, len(rows))

    def from_main(self, value: int) -> int:
        """Rank 0's ``value`` on every rank: a decision only rank 0 can make (early stopping
        on its validation) taken alike by all, so none leaves the loop alone. The others
        wait here while rank 0 validates and saves."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        torch.distributed.broadcast(t, 0)
        return int(t)

    def barrier(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (building a cache), then the others (reading it)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def close(self) -> None:
        """Leave the process group, and let its worker threads end while the interpreter is
        whole. Gloo's worker drops its reference to a finished collective a moment after the
        caller saw it finish, and freeing a tensor's Python object takes the GIL: a worker
        descheduled past the end of the program tried that while the interpreter was being
        finalized, and the process aborted ("terminate called without an active exception",
        a rank that returned right after its last gather; 1 run in ~12 on 2 loaded cores).
        The group's destructor joins its workers with the GIL released, and it runs once the
        last reference goes: DDP's wrapper holds one, in reference cycles, hence the
        collection. Called again after the caller's frames are gone, it collects again."""
        if not self.distributed:
            return
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        gc.collect()


def launch_env(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) for a plain run."""
    env = os.environ if env is None else env
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def setup(device: str = "auto", precision: str = "auto", env: Mapping[str, str] | None = None):
    """The Runtime of this process; joins the process group when torchrun started several."""
    rank, world, local_rank = launch_env(env)
    dev = resolve_device(device, local_rank=local_rank)
    prec = resolve_precision(precision, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1:
        if dev.type == "mps":
            raise UserError("--device mps trains in one process; torchrun needs cuda or cpu")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, init_method="env://", timeout=TIMEOUT)
    return Runtime(dev, prec, rank, world, local_rank)


class Loss(torch.nn.Module):
    """A model whose forward is its training loss, ``fn(model, *batch)``: DDP synchronizes
    the gradients of what its wrapped module's forward computed, and a family's loss is
    often a method of its own (``loss``, ``loss_terms``), not its forward."""

    def __init__(self, model: torch.nn.Module, fn: Any) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *batch: torch.Tensor) -> Any:
        return self.fn(self.model, *batch)


class Throughput:
    """Items (tokens, notes, frames) per second for the progress bar: over the last stretch
    of steps (the rate now), and over the whole run (``overall``, for the metrics)."""

    WINDOW = 20

    def __init__(self, per_step: int, step: int) -> None:
        self.per_step = per_step
        self.t0 = self.t_last = time.perf_counter()
        self.step0 = self.step_last = step

    def __call__(self, step: int) -> float:
        now = time.perf_counter()
        rate = self.per_step * (step - self.step_last) / max(now - self.t_last, 1e-9)
        if step - self.step_last >= self.WINDOW:
            self.t_last, self.step_last = now, step
        return rate

    def overall(self, step: int) -> float:
        return self.per_step * (step - self.step0) / max(time.perf_counter() - self.t0, 1e-9)
