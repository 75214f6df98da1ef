"""MusicVAE as one ONNX file of three gated parts: encoder, conductor, decoder step.

``melody[B,T] -> mu, sigma [B,Z]`` (the posterior); ``z[B,Z] -> conductor[B,U,C]`` (each
section's conditioning; a flat model's one section is z itself); ``tokens[B,S] +
condition[B,C] + past_h/past_c[L,B,H] -> logits[B,S,V] + present_h/present_c``, and with
no tokens the decoder's initial state for ``condition`` (``present_*``, empty logits). Each
part runs only when its input is non-empty (``export.gating``), so a live decoder step pays
for the decoder alone. The latent is an input: the voice draws, moves and interpolates it
(``live.vae_voice``); nothing random is in the graph.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from antiphon.contract import Signature, StatePair
from antiphon.export.gating import Part, gated
from antiphon.live.vae_voice import INPUTS, OUTPUTS, VAEStepper
from antiphon.models.midi.melody import FIRST_PITCH, NO_EVENT, NOTE_OFF

# The rollout's phrase: a scale up and down with held notes and a rest.
ROLLOUT_MELODY = [60, None, 62, None, 64, 65, 67, None, None, 0, 67, 65, 64, 62, 60, None]


class VAEGraph:
    opset = 17

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        c = model.config
        self.config = c
        self.layers, self.hidden = c.decoder_layers, c.decoder_hidden
        self.max_context = c.steps
        self.input_names, self.output_names = list(INPUTS), list(OUTPUTS)

    # -- the declaration ---------------------------------------------------------------------
    def signature(self) -> Signature:
        c = self.config
        state = [self.layers, "batch", self.hidden]
        return Signature(
            inputs={
                "melody": ["batch", "melody"],
                "z": ["batch", "latent"],  # empty (B, 0) when the conductor is not wanted
                "tokens": ["batch", "seq"],
                "condition": ["batch", c.condition_size],
                "past_h": state,
                "past_c": state,
            },
            outputs={
                "mu": ["batch", c.z_size],
                "sigma": ["batch", c.z_size],
                "conductor": ["batch", "sections", c.condition_size],
                "logits": ["batch", "seq", c.classes],
                "present_h": state,
                "present_c": state,
            },
            state=[
                StatePair("past_h", "present_h", -1, state),
                StatePair("past_c", "present_c", -1, state),
            ],
        )

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        sig = self.signature()
        return {
            name: {i: d for i, d in enumerate(shape) if isinstance(d, str)}
            for name, shape in {**sig.inputs, **sig.outputs}.items()
        }

    # -- torch on named numpy inputs, gated as the graph is -------------------------------------
    @torch.no_grad()
    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        m, c = self.model, self.config
        t = {n: torch.from_numpy(np.asarray(feed[n])) for n in self.input_names}
        B = t["melody"].shape[0]
        if t["melody"].shape[1]:
            mu, sigma = m.encode(t["melody"])
        else:
            mu, sigma = torch.zeros(B, c.z_size), torch.zeros(B, c.z_size)
        if t["z"].shape[1]:
            conductor = m.conduct(t["z"])
        else:
            conductor = torch.zeros(t["z"].shape[0], 0, c.condition_size)
        if t["tokens"].shape[1]:
            logits, (h, cc) = m.decode_steps(
                t["tokens"], t["condition"], (t["past_h"], t["past_c"])
            )
        else:
            logits = torch.zeros(t["tokens"].shape[0], 0, c.classes)
            h, cc = m.initial_state(t["condition"])
        outs = (mu, sigma, conductor, logits, h, cc)
        return {n: o.numpy() for n, o in zip(self.output_names, outs)}

    def feed(self, seq: int, past: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """``seq`` decoder steps after ``past`` real ones from a real initial state; for
        seq > 1 also a melody of ``seq + past`` events and a latent, so the encoder and the
        conductor are checked at other lengths too (a single step runs the decoder alone,
        as the daemon's steps do)."""
        c = self.config
        rng = np.random.default_rng(seed)
        condition = rng.standard_normal((batch, c.condition_size)).astype(np.float32)
        state = self.run({**self._empty(batch), "condition": condition})
        if past:
            tokens = rng.integers(0, c.classes, size=(batch, past))
            state = self.run(
                {**self._empty(batch), "tokens": tokens, "condition": condition,
                 "past_h": state["present_h"], "past_c": state["present_c"]}
            )  # fmt: skip
        more = seq > 1
        return {
            "melody": rng.integers(0, c.classes, size=(batch, (seq + past) if more else 0)),
            "z": rng.standard_normal((batch, c.z_size if more else 0)).astype(np.float32),
            "tokens": rng.integers(0, c.classes + 1, size=(batch, seq)),
            "condition": condition,
            "past_h": state["present_h"],
            "past_c": state["present_c"],
        }

    def _empty(self, batch: int) -> dict[str, np.ndarray]:
        c = self.config
        z = np.zeros((self.layers, batch, self.hidden), dtype=np.float32)
        return {
            "melody": np.zeros((batch, 0), dtype=np.int64),
            "z": np.zeros((batch, 0), dtype=np.float32),
            "tokens": np.zeros((batch, 0), dtype=np.int64),
            "condition": np.zeros((batch, c.condition_size), dtype=np.float32),
            "past_h": z,
            "past_c": z,
        }

    def rollout(self, run: Callable[[dict], dict], n: int) -> list[int]:
        """A fixed phrase encoded and decoded greedily through the voice's own stepping
        code, ``n`` events (phrases one after another, each from the last one's mean)."""
        stepper = VAEStepper(run, self.signature(), self.config.to_dict())
        melody = rollout_melody(self.config)
        out: list[int] = []
        while len(out) < n:
            melody = stepper.greedy(melody)
            out += melody
        return out[:n]

    # -- export ----------------------------------------------------------------------------------
    def _parts(self) -> list[tuple[str, str, Part, Part]]:
        """(name, trigger, the part, what runs instead when the trigger is empty)."""
        c = self.config
        axes = self.dynamic_axes()
        d = self.feed(seq=3, past=2)
        no_melody = {"melody": np.zeros((1, 0), dtype=np.int64)}
        no_z = {"z": np.zeros((1, 0), dtype=np.float32)}
        step_inputs = ["tokens", "condition", "past_h", "past_c"]
        step_outputs = ["logits", "present_h", "present_c"]

        def part(inputs: list[str], outputs: list[str], fn, dummy: dict) -> Part:  # type: ignore[no-untyped-def]
            module = _Module(self.model, fn).eval()
            return Part(self.opset, inputs, outputs, axes, module, lambda: dummy)

        def encode(m, melody):  # type: ignore[no-untyped-def]
            return m.encode(melody)

        def no_encoding(m, melody):  # type: ignore[no-untyped-def]
            zeros = melody.new_zeros(melody.shape[0], c.z_size).float()
            return zeros, zeros.clone()

        def conduct(m, z):  # type: ignore[no-untyped-def]
            return (m.conduct(z),)

        def no_conductor(m, z):  # type: ignore[no-untyped-def]
            return (z.new_zeros(z.shape[0], 0, c.condition_size),)

        def step(m, tokens, condition, h, cc):  # type: ignore[no-untyped-def]
            logits, (h, cc) = m.decode_steps(tokens, condition, (h, cc))
            return logits, h, cc

        def begin(m, condition):  # type: ignore[no-untyped-def]
            return (
                condition.new_zeros(condition.shape[0], 0, c.classes),
                *m.initial_state(condition),
            )

        return [
            ("encoder", "melody",
             part(["melody"], ["mu", "sigma"], encode, {"melody": d["melody"]}),
             part(["melody"], ["mu", "sigma"], no_encoding, no_melody)),
            ("conductor", "z",
             part(["z"], ["conductor"], conduct, {"z": d["z"]}),
             part(["z"], ["conductor"], no_conductor, no_z)),
            ("decoder", "tokens",
             part(step_inputs, step_outputs, step, {n: d[n] for n in step_inputs}),
             part(["condition"], step_outputs, begin, {"condition": d["condition"]})),
        ]  # fmt: skip

    def export_proto(self) -> onnx.ModelProto:
        from antiphon.export.onnx_export import export_graph

        sig = self.signature()
        weights: dict[str, onnx.TensorProto] = {}
        nodes: list[onnx.NodeProto] = []
        opsets = ir = None
        for prefix, trigger, then, otherwise in self._parts():
            a, b = export_graph(then, ""), export_graph(otherwise, "")
            opsets, ir = a.opset_import, a.ir_version
            nodes += gated(prefix, trigger, a.graph, b.graph, weights)
        ints = ("melody", "tokens")
        graph = helper.make_graph(
            nodes,
            "antiphon_musicvae",
            [_value_info(n, sig.inputs[n], n in ints) for n in self.input_names],
            [_value_info(n, sig.outputs[n]) for n in self.output_names],
            list(weights.values()),
        )
        proto = helper.make_model(graph, opset_imports=list(opsets or []), ir_version=ir or 8)
        onnx.checker.check_model(proto)
        return proto


class _Module(nn.Module):
    """One part of the model as a module (initializer names stay "model.<state_dict key>")."""

    def __init__(self, model: nn.Module, fn) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *args):  # type: ignore[no-untyped-def]
        return self.fn(self.model, *args)


def _value_info(name: str, shape: list, ints: bool = False) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        name, TensorProto.INT64 if ints else TensorProto.FLOAT, shape
    )


def rollout_melody(config) -> list[int]:  # type: ignore[no-untyped-def]
    """``ROLLOUT_MELODY`` as events of the model's range, repeated to a phrase."""
    lo = config.pitch_lo
    events = [
        NO_EVENT if p is None else NOTE_OFF if p == 0 else FIRST_PITCH + (p - lo) % config.n_pitches
        for p in ROLLOUT_MELODY
    ]
    return (events * (-(-config.steps // len(events))))[: config.steps]
