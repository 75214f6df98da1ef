"""Statistics of the whole global batch while torchrun's processes each hold a share of it.

The adversarial families read their batch as a whole, not row by row: feature matching and
MidiNet's mean matching compare batch means, minibatch discrimination sets each sample
against every other one of its batch, and BatchNorm normalises by the batch's mean and
variance. Computed on a process's rows alone, each is another statistic (a mean of 4 rows
is not the mean of 8), and N processes would not take the steps one process takes. So,
inside ``whole_batch(rt)``, these read the whole batch through collectives that autograd can
differentiate:

- ``batch_sum``: a sum over the ranks, whose gradient is the sum of every rank's gradient;
- ``batch_rows``: every rank's rows gathered (rank order), whose gradient is this rank's rows
  of the summed gradients.

With each rank's parameter gradients then averaged (``Runtime.average_gradients``), the
gradient is the one process's: a rank's loss is the mean over its rows (the global mean is
the mean of the ranks'), and what a statistic of the whole batch contributes through
another rank's rows comes back to this rank through the summed gradient. Outside the
context, or in one process, each is the plain local operation: a model trained so exports
and plays as before. PyTorch's ``SyncBatchNorm`` does the BatchNorm part, on CUDA only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

_WORLD = 1  # processes the batch is shared by, inside ``whole_batch``; 1 outside it


@contextlib.contextmanager
def whole_batch(rt: Any) -> Iterator[None]:
    """Batch statistics read the whole global batch of ``rt``'s processes (a
    ``models.distributed.Runtime``) while the block runs: a training step. Every rank must
    run the same statistics in the same order (they are collectives)."""
    global _WORLD
    before = _WORLD
    _WORLD = rt.world if rt.distributed else 1
    try:
        yield
    finally:
        _WORLD = before


def shared() -> int:
    """How many processes share the batch now (1: a plain, local batch)."""
    return _WORLD


class _SumOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.detach().clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(g)
        return g


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        ctx.rows = (rank * x.shape[0], x.shape[0])
        parts = [torch.empty_like(x) for _ in range(world)]
        torch.distributed.all_gather(parts, x.detach().contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(g)
        return g.narrow(0, *ctx.rows)


def batch_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the processes sharing the batch (``x`` itself in one)."""
    return _SumOverRanks.apply(x) if _WORLD > 1 else x


def batch_rows(x: torch.Tensor) -> torch.Tensor:
    """The whole batch's rows of a per-row tensor (dim 0), every rank's in rank order; ``x``
    itself in one process. This rank's own rows are the rank's slice of them."""
    return _GatherRows.apply(x) if _WORLD > 1 else x


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean over dim 0 of the whole batch (every rank holds as many rows)."""
    return batch_sum(x.sum(0)) / (x.shape[0] * _WORLD)


class _WholeBatchNorm:
    """BatchNorm over the whole batch while training inside ``whole_batch`` (else torch's
    own): the mean and the biased variance normalise, the unbiased variance enters the
    running estimate, as ``torch.nn.BatchNorm`` does. Same parameters and buffers as the
    torch class it extends, so checkpoints and exports do not change."""

    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _WORLD > 1):
            return super().forward(x)  # type: ignore[misc]
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        c, rows = x.shape[1], x.numel() // x.shape[1]  # every rank holds as many
        n = rows * _WORLD
        # One collective, as SyncBatchNorm: each rank's mean and sum of squared deviations,
        # gathered and combined exactly (Chan et al.), not E[x^2] - mean^2.
        local = x.mean(dims)
        m2 = ((x - local.view(shape)) ** 2).sum(dims)
        every = batch_rows(torch.cat((local, m2)).unsqueeze(0))  # (ranks, 2C)
        means = every[:, :c]
        mean = means.mean(0)
        var = (every[:, c:].sum(0) + rows * ((means - mean) ** 2).sum(0)) / n
        centred = x - mean.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(var.detach() * (n / max(n - 1, 1)), alpha=f)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


class WholeBatchNorm1d(_WholeBatchNorm, nn.BatchNorm1d):
    pass


class WholeBatchNorm2d(_WholeBatchNorm, nn.BatchNorm2d):
    pass
