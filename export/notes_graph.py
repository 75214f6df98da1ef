"""The note RNN as one ONNX graph with its LSTM state explicit.

``pitch[B,S] + step[B,S] + duration[B,S] + past_h/past_c[L,B,H] -> pitch_logits[B,S,128] +
next_step[B,S] + next_duration[B,S] + present_h/present_c[L,B,H]``. The state has a fixed
size (``StatePair`` axis -1), so a live step costs the same after ten notes or ten thousand;
the same graph reads a whole prompt (S > 1) and one note at a time (S = 1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from antiphon.contract import Signature, StatePair
from antiphon.export.graphs import FlatGraph
from antiphon.live.notes_voice import quantize

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
ROLLOUT_TPQ = 8  # the rollout quantizes times to 1/8 beat, as the default grid does
ROLLOUT_PROMPT = [(60, 0.0, 0.5), (62, 0.5, 0.5), (64, 0.5, 0.5), (65, 0.5, 1.0), (67, 1.0, 2.0)]


class NoteRNNGraph(FlatGraph):
    opset = 17

    def __init__(self, model: nn.Module) -> None:
        self.input_names = ["pitch", "step", "duration", "past_h", "past_c"]
        self.output_names = ["pitch_logits", "next_step", "next_duration", "present_h", "present_c"]
        self.model = model.eval()
        c = model.config
        self.n_layer, self.hidden, self.pitches = c.n_layer, c.hidden, c.pitches
        self.max_beats = c.max_beats
        self.max_context = c.block_size  # notes per training window (the state carries on)

    def signature(self) -> Signature:
        state = [self.n_layer, "batch", self.hidden]
        return Signature(
            inputs={
                "pitch": ["batch", "seq"],
                "step": ["batch", "seq"],
                "duration": ["batch", "seq"],
                "past_h": state,
                "past_c": state,
            },
            outputs={
                "pitch_logits": ["batch", "seq", self.pitches],
                "next_step": ["batch", "seq"],
                "next_duration": ["batch", "seq"],
                "present_h": state,
                "present_c": state,
            },
            state=[
                StatePair("past_h", "present_h", -1, state),
                StatePair("past_c", "present_c", -1, state),
            ],
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        seq = {0: "batch", 1: "seq"}
        axes: dict[str, dict[int, str]] = {n: dict(seq) for n in ("pitch", "step", "duration")}
        axes.update({n: dict(seq) for n in ("pitch_logits", "next_step", "next_duration")})
        axes.update({n: {1: "batch"} for n in ("past_h", "past_c", "present_h", "present_c")})
        return axes

    def _make_wrapper(self) -> nn.Module:
        graph = self

        class Flat(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = graph.model

            def forward(self, pitch, step, duration, past_h, past_c):  # type: ignore[no-untyped-def]
                logits, s, d, (h, c) = self.model(pitch, step, duration, (past_h, past_c))
                return logits, s, d, h, c

        return Flat().eval()

    def empty_state(self, batch: int = 1) -> dict[str, np.ndarray]:
        z = np.zeros((self.n_layer, batch, self.hidden), dtype=np.float32)
        return {"past_h": z, "past_c": z.copy()}

    def random_notes(self, rng: np.random.Generator, batch: int, n: int) -> dict[str, np.ndarray]:
        """Plausible notes: pitches of a piano, steps and durations on an 1/8-beat grid."""
        return {
            "pitch": rng.integers(21, 109, size=(batch, n)).astype(np.int64),
            "step": (rng.integers(0, 17, size=(batch, n)) / 8).astype(np.float32),
            "duration": (rng.integers(1, 17, size=(batch, n)) / 8).astype(np.float32),
        }

    def feed(self, seq: int, past: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """``seq`` new notes after a state that has read ``past`` notes (a real run)."""
        rng = np.random.default_rng(seed)
        state = self.empty_state(batch)
        if past:
            out = self.run({**self.random_notes(rng, batch, past), **state})
            state = {"past_h": out["present_h"], "past_c": out["present_c"]}
        return {**self.random_notes(rng, batch, seq), **state}

    def rollout(self, run: RunFn, n: int) -> list[tuple[int, int, int]]:
        """A deterministic melody through ``run``: a five-note prompt, then the argmax pitch
        and the step and duration heads (clamped to 0..max_beats, quantized to 1/8 beat) fed
        back, ``n`` notes as (pitch, step ticks, duration ticks)."""
        prompt = np.asarray(ROLLOUT_PROMPT, dtype=np.float32)
        feed = {
            "pitch": prompt[None, :, 0].astype(np.int64),
            "step": prompt[None, :, 1].copy(),
            "duration": prompt[None, :, 2].copy(),
            **self.empty_state(),
        }
        notes: list[tuple[int, int, int]] = []
        for _ in range(n):
            out = run(feed)
            pitch = int(np.argmax(out["pitch_logits"][0, -1]))
            step = quantize(float(out["next_step"][0, -1]), self.max_beats, ROLLOUT_TPQ)
            length = quantize(float(out["next_duration"][0, -1]), self.max_beats, ROLLOUT_TPQ)
            duration = max(1, length)
            notes.append((pitch, step, duration))
            feed = {
                "pitch": np.asarray([[pitch]], dtype=np.int64),
                "step": np.asarray([[step / ROLLOUT_TPQ]], dtype=np.float32),
                "duration": np.asarray([[duration / ROLLOUT_TPQ]], dtype=np.float32),
                "past_h": out["present_h"],
                "past_c": out["present_c"],
            }
        return notes
