"""C-RNN-GAN's generator step as one ONNX graph, its recurrent state and its noise explicit.

``noise[B,S,Z] + prev[B,S,4] + past_h/past_c[L,B,H] -> notes[B,S,4] + present_h/present_c``:
``prev`` is the note before each step (the player's notes while the voice listens, the
generator's own last note while it plays), the noise is drawn outside the graph (a seed
reproduces an answer), and the state has a fixed size, so a step costs the same however
long the session. The same graph reads a whole phrase (S > 1) and one note (S = 1).

The rollout frees the generator for ``n`` notes from silence with seeded noise, each output
rounded as the voice plays it (ticks of 1/8 beat, the pitch to a MIDI key) and fed back as
placed, and compares the notes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from antiphon.contract import Signature, StatePair
from antiphon.export.graphs import FlatGraph
from antiphon.live.crnngan_voice import placed_features

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
ROLLOUT_TPQ = 8


class CRNNGANGraph(FlatGraph):
    opset = 17
    input_dtype = np.float32

    def __init__(self, model: nn.Module) -> None:
        self.input_names = ["noise", "prev", "past_h", "past_c"]
        self.output_names = ["notes", "present_h", "present_c"]
        self.model = model.eval()
        c = self.config = model.config
        self.n_layer, self.hidden, self.noise = c.n_layer, c.hidden, c.noise
        self.max_context = c.block_size

    def signature(self) -> Signature:
        state = [self.n_layer, "batch", self.hidden]
        return Signature(
            inputs={
                "noise": ["batch", "seq", self.noise],
                "prev": ["batch", "seq", 4],
                "past_h": state,
                "past_c": state,
            },
            outputs={"notes": ["batch", "seq", 4], "present_h": state, "present_c": state},
            state=[
                StatePair("past_h", "present_h", -1, state),
                StatePair("past_c", "present_c", -1, state),
            ],
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        seq = {0: "batch", 1: "seq"}
        axes: dict[str, dict[int, str]] = {n: dict(seq) for n in ("noise", "prev", "notes")}
        axes.update({n: {1: "batch"} for n in ("past_h", "past_c", "present_h", "present_c")})
        return axes

    def _make_wrapper(self) -> nn.Module:
        graph = self

        class Flat(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = graph.model

            def forward(self, noise, prev, past_h, past_c):  # type: ignore[no-untyped-def]
                notes, (h, c) = self.model(noise, prev, (past_h, past_c))
                return notes, h, c

        return Flat().eval()

    def empty_state(self, batch: int = 1) -> dict[str, np.ndarray]:
        z = np.zeros((self.n_layer, batch, self.hidden), dtype=np.float32)
        return {"past_h": z, "past_c": z.copy()}

    def _steps(self, rng: np.random.Generator, batch: int, n: int) -> dict[str, np.ndarray]:
        prev = np.stack(
            [
                rng.integers(0, 9, (batch, n)) / 4,
                rng.integers(1, 9, (batch, n)) / 4,
                rng.normal(0, 1, (batch, n)),
                rng.uniform(0.3, 0.9, (batch, n)),
            ],
            axis=-1,
        ).astype(np.float32)
        noise = rng.standard_normal((batch, n, self.noise)).astype(np.float32)
        return {"noise": noise, "prev": prev}

    def feed(self, seq: int, past: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        state = self.empty_state(batch)
        if past:
            out = self.run({**self._steps(rng, batch, past), **state})
            state = {"past_h": out["present_h"], "past_c": out["present_c"]}
        return {**self._steps(rng, batch, seq), **state}

    def rollout(self, run: RunFn, n: int) -> list[tuple[int, int, int, int]]:
        rng = np.random.default_rng(11)
        prev = np.zeros((1, 1, 4), dtype=np.float32)
        state = self.empty_state()
        notes: list[tuple[int, int, int, int]] = []
        for _ in range(n):
            noise = rng.standard_normal((1, 1, self.noise)).astype(np.float32)
            out = run({"noise": noise, "prev": prev, **state})
            note, prev_row = placed_features(out["notes"][0, -1], self.config_dict(), ROLLOUT_TPQ)
            notes.append(note)
            prev = prev_row[None, None]
            state = {"past_h": out["present_h"], "past_c": out["present_c"]}
        return notes

    def config_dict(self) -> dict:
        return self.config.to_dict()
