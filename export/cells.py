"""A stacked ``nn.GRU`` written out as one step of cells, for a single-step int8 graph.

Why: a batch-1 GRU step mostly reads weights (2 x 256 hidden: 3.4 MB in fp32), so
onnxruntime's fused GRU operator cannot get far below torch's; int8 weights read a quarter
of that. onnxruntime's dynamic quantizer quantizes MatMul, not the GRU operator, so the
step is exported with its matrix products as plain MatMuls (after ``export.quantize``'s
transpose folding each becomes an int8 ``DynamicQuantizeMatMul``) and the gates as
elementwise ops. The graph takes one step (sequence length 1): a loop operator over the
sequence costs more per step than the int8 weights save, so longer inputs are run one step
at a time by ``live.session.ModelFile``.

The parameters are the GRU's own (shared, not copied), so initializer names stay the
state_dict keys and ``export.reload`` rebuilds the torch model from the int8 file. The gate
equations are torch's (``linear_before_reset``: the reset gate scales the hidden
projection after its bias), so the step is the same function as ``nn.GRU`` up to summation
order; verification runs it against ``nn.GRU`` itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from antiphon.contract import Signature


def gru_step(rnn: nn.GRU, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a stacked ``nn.GRU`` in eval mode (no inter-layer dropout):
    ``(x[B, I], h[L, B, H]) -> (top layer's new h[B, H], new h[L, B, H])``."""
    if rnn.bidirectional or not rnn.bias or rnn.proj_size:
        raise ValueError("gru_step covers unidirectional GRUs with biases and no projection")
    new = []
    for layer in range(rnn.num_layers):
        x = _cell(rnn, layer, x, h[layer])
        new.append(x)
    return x, torch.stack(new)


def _cell(rnn: nn.GRU, layer: int, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
    b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")
    # x @ W.t() (not F.linear, which traces to Gemm): a Transpose of a weight into a MatMul
    # is what the quantizer's transpose folding turns into an int8 weight.
    # Split by a constant size (chunk traces to shape arithmetic and Slices).
    i_r, i_z, i_n = (x @ w_ih.t() + b_ih).split(rnn.hidden_size, dim=-1)
    h_r, h_z, h_n = (h @ w_hh.t() + b_hh).split(rnn.hidden_size, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)  # (1 - z) * n + z * h


class StepGraph:
    """The single-step form of a sequence adapter (``export.graphs``): the same inputs,
    outputs and state, with the sequence axis of ``stepped`` fixed at 1, traced through
    ``step`` (a module taking the inputs in order). Everything else — feeds, the torch
    reference run (the sequence model itself, so parity checks the cells against
    ``nn.GRU``), rollouts — is the sequence adapter's."""

    dummy_seq = 1  # export traces one step

    def __init__(self, sequence: Any, step: nn.Module, stepped: tuple[str, ...]) -> None:
        self.sequence, self.step, self.stepped = sequence, step.eval(), stepped

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["sequence"], name)

    def signature(self) -> Signature:
        sig = self.sequence.signature()
        one = lambda shape: [shape[0], 1, *shape[2:]]  # noqa: E731
        return Signature(
            inputs={n: one(s) if n in self.stepped else s for n, s in sig.inputs.items()},
            outputs={n: one(s) if n in self.stepped else s for n, s in sig.outputs.items()},
            state=sig.state,
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = self.sequence.dynamic_axes()
        return {
            n: {k: v for k, v in a.items() if not (n in self.stepped and k == 1)}
            for n, a in axes.items()
        }

    def wrapper(self) -> nn.Module:
        return self.step

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.sequence.run(feed)
