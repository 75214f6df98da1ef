"""MuseGAN's generator as one ONNX graph: latents and the given track in, key probabilities out.

``z_shared[B,Z] + z_shared_t[B,Z] + z_private[B,T,Z] + z_private_t[B,T,Z] +
condition[B,bars,steps,pitches] + given[B] -> probs[B,T,bars,steps,pitches]``. No state:
one run is one phrase of ``bars`` bars. The latents are inputs (the voice draws them with
the session's seed and may hold or move them); notes are drawn from the probabilities
outside the graph. The critic is not exported.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from antiphon.contract import Signature
from antiphon.export.graphs import FlatGraph
from antiphon.live.musegan_voice import INPUTS, MuseGANStepper, notes_of


class MuseGANGraph(FlatGraph):
    opset = 17
    input_dtype = None

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self.config = c = model.config
        self.input_names, self.output_names = list(INPUTS), ["probs"]
        self.max_context = c.bars * c.steps  # steps of one phrase

    def signature(self) -> Signature:
        c = self.config
        roll = ["batch", c.bars, c.steps, c.n_pitches]
        return Signature(
            inputs={
                "z_shared": ["batch", c.z_size],
                "z_shared_t": ["batch", c.z_size],
                "z_private": ["batch", c.tracks, c.z_size],
                "z_private_t": ["batch", c.tracks, c.z_size],
                "condition": roll,
                "given": ["batch"],
            },
            outputs={"probs": ["batch", c.tracks, c.bars, c.steps, c.n_pitches]},
            state=[],
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {n: {0: "batch"} for n in [*self.input_names, *self.output_names]}

    def _make_wrapper(self) -> nn.Module:
        graph = self

        class Flat(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = graph.model  # initializer names stay "model.<state_dict key>"

            def forward(self, zs, zst, zp, zpt, condition, given):  # type: ignore[no-untyped-def]
                return (self.model(zs, zst, zp, zpt, condition, given),)

        return Flat().eval()

    def feed(self, seq: int, past: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Random latents and a random given track (given or not by the seed's parity):
        the sequence lengths of token graphs mean nothing to a phrase generator, the seed
        makes each case another phrase."""
        c = self.config
        rng = np.random.default_rng(seed)
        condition = (rng.random((batch, c.bars, c.steps, c.n_pitches)) < 0.03).astype(np.float32)
        return {
            "z_shared": rng.standard_normal((batch, c.z_size)).astype(np.float32),
            "z_shared_t": rng.standard_normal((batch, c.z_size)).astype(np.float32),
            "z_private": rng.standard_normal((batch, c.tracks, c.z_size)).astype(np.float32),
            "z_private_t": rng.standard_normal((batch, c.tracks, c.z_size)).astype(np.float32),
            "condition": condition,
            "given": np.full(batch, float((seq + past) % 2), dtype=np.float32),
        }

    def rollout(self, run: Callable[[dict], dict], n: int) -> list[tuple[int, int, int, int]]:
        """The notes (track, start, end, pitch) of fixed phrases, keys drawn without
        randomness, from scratch and accompanying, through the voice's own stepping code."""
        stepper = MuseGANStepper(run, self.config.to_dict())
        out: list[tuple[int, int, int, int]] = []
        for seed in range(3):
            feed = self.feed(1, seed, seed=seed)
            probs = stepper.generate(feed)
            out += notes_of(stepper.keys(probs), self.config.pitch_lo)
        return (out + [(-1, 0, 0, 0)] * n)[:n]
