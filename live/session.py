"""An antiphon ``.onnx`` file opened for inference: onnxruntime session + its metadata.

Session options are chosen for latency at batch 1: one intra-op thread (a decode step is a
handful of small matmuls; a thread pool's hand-offs cost more than they save), no spinning
(spinning threads would burn a core while the daemon idles), sequential execution, all
graph optimizations, and no memory-pattern planning: that plan is cached per input shape,
and a growing cache changes shape every step, so planning anew cost ~0.5 ms a token.
"""

from __future__ import annotations

from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from antiphon.contract import ModelInfo
from antiphon.errors import UserError

if TYPE_CHECKING:
    from antiphon.live.stepper import TokenStepper

DEFAULT_MODEL = "default.onnx"
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def choose_providers(requested: str, available: list[str]) -> list[str]:
    """``--provider auto|cpu|cuda`` as onnxruntime's provider list: auto takes CUDA where
    this onnxruntime has it (``pip install 'antiphon[gpu]'``), else the CPU."""
    if requested not in ("auto", *PROVIDERS):
        raise UserError(f"--provider {requested}: expected auto, cpu or cuda")
    cuda, cpu = PROVIDERS["cuda"], PROVIDERS["cpu"]
    if requested == "cuda" and cuda not in available:
        raise UserError(
            "--provider cuda: this onnxruntime has no CUDA provider (it has "
            f"{', '.join(available) or 'none'}); pip install 'antiphon[gpu]' on a machine with "
            "an NVIDIA GPU, or pass --provider cpu"
        )
    if requested != "cpu" and cuda in available:
        return [cuda, cpu]
    return [cpu]


def provider_name(session_providers: list[str]) -> str:
    """The provider a session runs on first, as ``--provider`` names it."""
    first = session_providers[0] if session_providers else PROVIDERS["cpu"]
    names = {v: k for k, v in PROVIDERS.items()}
    return names.get(first, first.removesuffix("ExecutionProvider").lower())


def default_model_path() -> Path:
    path = Path(str(resources.files("antiphon.live").joinpath("assets", DEFAULT_MODEL)))
    if not path.is_file():
        raise UserError(
            "the default model is not installed with this copy of antiphon; pass --model FILE.onnx"
        )
    return path


def session_options(threads: int = 1):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    opts.enable_mem_pattern = False
    return opts


def _one_step(shape: list) -> bool:
    return len(shape) >= 2 and shape[0] == "batch" and shape[1] == 1


class ModelFile:
    def __init__(self, path: Path, info: ModelInfo, session: object) -> None:
        self.path, self.info, self.session = path, info, session
        self.provider = provider_name(session.get_providers())  # type: ignore[attr-defined]
        self.output_names = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
        self._ort_values: OrderedDict[int, tuple[np.ndarray, object]] = OrderedDict()
        # Three sets of the KV buffers written in place (see ``_ort_value``).
        self._ort_keep = 3 * max(1, sum(1 for p in info.signature.state if p.inplace))
        # A single-step graph (``export.cells``: the int8 GRUs) declares its sequence axis
        # as 1; longer inputs are run a step at a time, so callers never see the difference.
        sig = info.signature
        pairs = {p.input for p in sig.state} | {p.output for p in sig.state}
        self._stepped_in = [n for n, s in sig.inputs.items() if n not in pairs and _one_step(s)]
        self._stepped_out = {n for n, s in sig.outputs.items() if n not in pairs and _one_step(s)}

    @classmethod
    def open(
        cls, path: str | Path | None = None, *, threads: int = 1, provider: str = "auto"
    ) -> ModelFile:
        import onnxruntime as ort

        path = default_model_path() if path is None else Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such model file")
        providers = choose_providers(provider, ort.get_available_providers())
        try:
            session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path}: not a loadable ONNX model ({first[:160]})") from None
        used = provider_name(session.get_providers())
        if provider == "cuda" and used != "cuda":  # onnxruntime-gpu without its CUDA libraries
            raise UserError(
                f"--provider cuda: onnxruntime could not start CUDA for {path} (it fell back "
                f"to {used}); check the CUDA and cuDNN libraries onnxruntime-gpu needs, or pass "
                "--provider cpu"
            )
        meta = session.get_modelmeta().custom_metadata_map
        info = ModelInfo.from_props(meta, str(path))
        names = {i.name for i in session.get_inputs()}
        expected = set(info.signature.inputs)
        if names != expected:
            raise UserError(
                f"{path}: the graph's inputs {sorted(names)} do not match its metadata "
                f"{sorted(expected)}; re-export it"
            )
        return cls(path, info, session)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._stepped_in and np.shape(feed[self._stepped_in[0]])[1] != 1:
            return self._run_steps(feed)
        outs = self.session.run(self.output_names, feed)  # type: ignore[attr-defined]
        return dict(zip(self.output_names, outs))

    def _run_steps(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A single-step graph over a longer input: one run a step, the state threaded
        through, the stepped outputs joined along the sequence axis."""
        seq = np.shape(feed[self._stepped_in[0]])[1]
        if seq == 0:
            raise ValueError("a model step needs at least one input step")
        pairs = self.info.signature.state
        current = dict(feed)
        steps: dict[str, list[np.ndarray]] = {n: [] for n in self._stepped_out}
        for t in range(seq):
            for n in self._stepped_in:
                current[n] = np.asarray(feed[n])[:, t : t + 1]
            out = self.run(current)
            for n in self._stepped_out:
                steps[n].append(out[n])
            current.update({p.input: out[p.output] for p in pairs})
        return {**out, **{n: np.concatenate(v, axis=1) for n, v in steps.items()}}

    def run_bound(
        self, feed: dict[str, np.ndarray], bound: list[tuple[str, str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """Run with each (input, output, array) of ``bound`` read and written in place (IO
        binding: a KV buffer is neither copied in nor out); returns the other outputs."""
        import onnxruntime as ort

        binding = self.session.io_binding()  # type: ignore[attr-defined]
        for name, value in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        written = {out for _, out, _ in bound}
        rest = [n for n in self.output_names if n not in written]
        for name in rest:
            binding.bind_output(name)
        for inp, out, array in bound:
            value = self._ort_value(array, ort)
            binding.bind_ortvalue_input(inp, value)
            binding.bind_ortvalue_output(out, value)
        self.session.run_with_iobinding(binding)  # type: ignore[attr-defined]
        outs = binding.get_outputs()
        return {name: outs[i].numpy() for i, name in enumerate(rest)}

    def _ort_value(self, array: np.ndarray, ort):  # type: ignore[no-untyped-def]
        """An OrtValue sharing ``array``'s memory, made once per array (a state's buffers
        are bound every step). Keyed by identity; the array is kept so its id stays its.

        The cache holds the most recently bound arrays only, a few sets of a state's KV
        buffers (the live one, a speculation's, the one being replaced): each entry keeps
        its array alive, and a fixed 64-entry cache held eight dead KV sets (+15 MB) in a
        long session before it cleared."""
        key = id(array)
        hit = self._ort_values.get(key)
        if hit is not None and hit[0] is array:
            self._ort_values.move_to_end(key)
            return hit[1]
        value = ort.OrtValue.ortvalue_from_numpy(array)
        self._ort_values[key] = (array, value)
        while len(self._ort_values) > self._ort_keep:
            self._ort_values.popitem(last=False)
        return value

    def stepper(self) -> TokenStepper:
        """A token stepper over this session, writing KV buffers in place."""
        from antiphon.live.stepper import TokenStepper

        return TokenStepper(self.run, self.info.signature, self.info.max_context, self.run_bound)
