"""The piano-roll families as one ONNX graph: frames + recurrent state -> key logits + state.

``frames[B,S,K] + past_h (+ past_c) [L,B,H] -> logits[B,S,K] + present_h (+ present_c)``.
The state is fixed-size (``StatePair`` axis -1), so a live step costs the same however long
the daemon has listened. ``logits[:, s, i]`` is key i of frame s given the history before s
and the keys of frame s below i: the same graph scores whole pieces in one run
(``export.polyeval``) and, fed a partial frame, samples a NADE frame key by key
(``live.frames_voice.FrameStepper``: one run per key chosen, not per key).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from antiphon.contract import Signature, StatePair
from antiphon.export.cells import StepGraph, gru_step
from antiphon.export.graphs import FlatGraph
from antiphon.live.frames_voice import FrameStepper, greedy_keys

PROMPT_CHORDS = ((48, 60, 64, 67), (53, 60, 65, 69), (55, 59, 62, 67))  # C, F, G
PROMPT_FRAMES = 4 * len(PROMPT_CHORDS)  # rollout: the chords, then greedy frames


class PianoRollGraph(FlatGraph):
    opset = 17
    input_dtype = np.float32  # frames may arrive as booleans or bytes

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        c = model.config
        self.n_keys, self.n_layer, self.n_hidden = c.n_keys, c.n_layer, c.n_hidden
        self.pitch_lo = c.pitch_lo
        self.max_context = c.seq_len  # the training window; the state itself runs on
        self.independent = c.head == "sigmoid"
        kinds = ("h",) if c.cell == "gru" else ("h", "c")
        self.state_in = [f"past_{k}" for k in kinds]
        self.state_out = [f"present_{k}" for k in kinds]
        self.input_names = ["frames", *self.state_in]
        self.output_names = ["logits", *self.state_out]

    def signature(self) -> Signature:
        state = [self.n_layer, "batch", self.n_hidden]
        return Signature(
            inputs={"frames": ["batch", "seq", self.n_keys], **{n: state for n in self.state_in}},
            outputs={
                "logits": ["batch", "seq", self.n_keys],
                **{n: state for n in self.state_out},
            },
            state=[StatePair(i, o, -1, state) for i, o in zip(self.state_in, self.state_out)],
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {
            "frames": {0: "batch", 1: "seq"},
            "logits": {0: "batch", 1: "seq"},
        }
        for n in self.state_in + self.state_out:
            axes[n] = {1: "batch"}
        return axes

    def _make_wrapper(self) -> nn.Module:
        model = self.model

        class Flat(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model  # initializer names stay "model.<state_dict key>"

            def forward(self, frames, *state):  # type: ignore[no-untyped-def]
                logits, new_state = self.model(frames, tuple(state))
                return (logits, *new_state)

        return Flat().eval()

    def step_graph(self) -> StepGraph | None:
        """The GRU's single-step form with its gates written out, which int8 quantization
        reaches (``export.cells``); None for the LSTM, whose fp32 graph suffices."""
        if self.model.config.cell != "gru":
            return None
        return StepGraph(self, _GRUFrameStep(self.model), ("frames", "logits"))

    def empty_state(self, batch: int = 1) -> dict[str, np.ndarray]:
        z = np.zeros((self.n_layer, batch, self.n_hidden), dtype=np.float32)
        return {n: z for n in self.state_in}

    def feed(self, seq: int, past: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """``seq`` random frames (about 4 keys of 88 down, like music) after a state that
        has heard ``past`` others."""
        rng = np.random.default_rng(seed)
        state = self.empty_state(batch)
        if past:
            out = self.run({"frames": _random_frames(rng, batch, past, self.n_keys), **state})
            state = {i: out[o] for i, o in zip(self.state_in, self.state_out)}
        return {"frames": _random_frames(rng, batch, seq, self.n_keys), **state}

    def rollout(self, run, n: int) -> list[tuple[int, ...]]:  # type: ignore[no-untyped-def]
        """n greedy frames (every key at probability > 0.5, low key first for the NADE
        head) after a fixed prompt of chords, through ``run`` (torch or onnxruntime)."""
        stepper = FrameStepper(run, self.signature(), self.n_keys, self.independent)
        prompt = np.zeros((PROMPT_FRAMES, self.n_keys), dtype=np.float32)
        for t, chord in enumerate(PROMPT_CHORDS):  # a trained model holds or moves them
            for pitch in chord:
                prompt[4 * t : 4 * t + 4, (pitch - self.pitch_lo) % self.n_keys] = 1.0
        state = stepper.feed(stepper.empty(), prompt)
        frames = []
        for _ in range(n):
            keys, state, _ = stepper.sample(state, greedy_keys)
            frames.append(tuple(int(k) for k in keys))
        return frames


class _GRUFrameStep(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model  # initializer names stay "model.<state_dict key>"

    def forward(self, frames: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _, new = gru_step(self.model.rnn, frames[:, 0], h)
        # The frame's keys are conditioned on the top layer's state before it.
        return self.model.head_logits(h[-1].unsqueeze(1), frames), new


def _random_frames(rng: np.random.Generator, batch: int, seq: int, keys: int) -> np.ndarray:
    return (rng.random((batch, seq, keys)) < 4 / keys).astype(np.float32)
