"""MidiNet's generator as one ONNX graph: ``noise[B,Z] + prev_bar[B,16,W] + chord[B,14] ->
logits[B,16,W]`` (W = keys + the rest column). No recurrent state: the previous bar is the
memory, and it is an input, so the daemon conditions each bar on what the player just played
or on the bar it generated before. The noise is an input too (sampling stays outside the
graph): the same noise, bar and chord give the same logits, and a seed gives the same bar.

Verification runs batches of other sizes than the export dummy (the batch is the only
dynamic axis), and the rollout decodes bars greedily in a chain — each bar the previous one's
condition, chords cycling through I-vi-IV-V, noise from a fixed seed — and compares them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from antiphon.contract import Signature
from antiphon.export.graphs import FlatGraph
from antiphon.models.midi.bars import CHORD_DIM, STEPS, chord_vector

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
ROLLOUT_CHORDS = ((0, 0), (9, 1), (5, 0), (7, 0))  # C, Am, F, G


class MidiNetGraph(FlatGraph):
    opset = 17
    input_dtype = np.float32

    def __init__(self, model: nn.Module) -> None:
        self.input_names = ["noise", "prev_bar", "chord"]
        self.output_names = ["logits"]
        self.model = model.eval()
        c = model.config
        self.noise, self.width = c.noise, c.width
        self.max_context = STEPS  # the condition is one bar

    def signature(self) -> Signature:
        return Signature(
            inputs={
                "noise": ["batch", self.noise],
                "prev_bar": ["batch", STEPS, self.width],
                "chord": ["batch", CHORD_DIM],
            },
            outputs={"logits": ["batch", STEPS, self.width]},
            state=[],
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {n: {0: "batch"} for n in [*self.input_names, *self.output_names]}

    def _make_wrapper(self) -> nn.Module:
        graph = self

        class Flat(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = graph.model

            def forward(self, noise, prev_bar, chord):  # type: ignore[no-untyped-def]
                return (self.model(noise, prev_bar, chord),)  # run() zips outputs by name

        return Flat().eval()

    def feed(self, seq: int, past: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """A batch of ``seq`` conditions (the graph has no sequence axis: its batch is the
        axis verification varies); ``past`` is unused (no state)."""
        rng = np.random.default_rng(seed)
        n = max(1, seq) * batch
        prev = np.zeros((n, STEPS, self.width), dtype=np.float32)
        prev[np.arange(n)[:, None], np.arange(STEPS), rng.integers(0, self.width, (n, STEPS))] = 1
        chords = np.stack(
            [chord_vector(None if r < 0 else (r % 12, r % 2)) for r in rng.integers(-3, 24, n)]
        )
        return {
            "noise": rng.standard_normal((n, self.noise)).astype(np.float32),
            "prev_bar": prev,
            "chord": chords,
        }

    def rollout(self, run: RunFn, n: int) -> list[int]:
        """``n`` steps of greedily decoded bars (the index chosen at each step)."""
        rng = np.random.default_rng(7)
        prev = np.zeros((1, STEPS, self.width), dtype=np.float32)
        prev[0, :, -1] = 1.0  # silence
        out: list[int] = []
        bar = 0
        while len(out) < n:
            chord = chord_vector(ROLLOUT_CHORDS[bar % len(ROLLOUT_CHORDS)])[None]
            noise = rng.standard_normal((1, self.noise)).astype(np.float32)
            logits = run({"noise": noise, "prev_bar": prev, "chord": chord})["logits"][0]
            choice = logits.argmax(-1)
            out.extend(int(x) for x in choice)
            prev = np.zeros_like(prev)
            prev[0, np.arange(STEPS), choice] = 1.0
            bar += 1
        return out[:n]
