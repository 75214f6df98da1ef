"""``antiphon bench``: per-step decode latency, onnxruntime vs torch eager, in one run.

Both run the same weights at batch 1 with a warm state of ``context`` steps, on the same
number of threads, on the same inputs. They alternate in blocks of ``BLOCK`` steps, so
machine noise hits both alike while each keeps its own weights in cache between its steps,
as it would in the daemon (alternating every single step would make each engine evict the
other's weights and time memory traffic instead of the engine). The ratio is of medians.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from antiphon.export.graphs import TokenKVGraph, graph_for
from antiphon.export.reload import torch_from_onnx
from antiphon.live.session import ModelFile

BLOCK = 25  # steps per engine before switching (and the longest a state grows)


@dataclass
class Latency:
    engine: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    tokens_per_s: float


@dataclass
class BenchResult:
    model: str
    family: str
    params: int
    context: int
    steps: int
    threads: int
    rows: list[Latency]
    int8: bool = False  # the file is dynamically quantized (torch also runs its own int8)
    provider: str = "cpu"  # onnxruntime's (torch eager always runs on the CPU)

    @property
    def speedups(self) -> dict[str, float]:
        """p50 of each torch row over onnxruntime's."""
        ort = self.rows[0]
        return {row.engine: row.p50_ms / ort.p50_ms for row in self.rows[1:]}

    @property
    def speedup(self) -> float:
        """Against the slower-to-beat of the torch rows (int8 torch, where it is faster)."""
        return min(self.speedups.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "speedup_p50": self.speedup, "speedups_p50": self.speedups}


def _summary(name: str, seconds: list[float]) -> Latency:
    ms = np.asarray(seconds) * 1e3
    return Latency(
        name,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 90)),
        float(np.percentile(ms, 99)),
        float(1e3 / ms.mean()),
    )


Step = Callable[[], object]
Engine = tuple[str, Callable[[], Step]]  # name, and a factory of steps from the warm state


def bench(
    model_path: str | Path | None = None,
    *,
    context: int = 256,
    steps: int = 200,
    warmup: int = 20,
    threads: int = 1,
    seed: int = 0,
    provider: str = "auto",
) -> BenchResult:
    """One model step (one token, frame or note) after a warm state of ``context`` steps.

    onnxruntime runs the way the daemon runs it (a token model through ``TokenStepper``,
    its KV buffers bound in place); torch eager runs the model's own forward. For an int8
    file, torch gets the dequantized weights, and a third row runs torch's own dynamic int8
    quantization of them (``torch.ao``), so the ratio is not just the quantization's."""
    mf = ModelFile.open(model_path, threads=threads, provider=provider)
    info = mf.info
    torch.set_num_threads(threads)
    model = torch_from_onnx(mf.path)
    context = min(context, info.max_context - 1)
    engines = [
        _ort_engine(mf, model, context, seed),
        ("torch eager", _eager(info.family, model, context, seed)),
    ]
    int8 = bool(info.provenance.get("quantization"))
    if int8:
        with warnings.catch_warnings():  # torch.ao's eager quantization is deprecated, works
            warnings.simplefilter("ignore")
            qmodel = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model), {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8
            )
        engines.append(("torch eager int8", _eager(info.family, qmodel, context, seed)))
    times: dict[str, list[float]] = {name: [] for name, _ in engines}

    def block(step: Step, out: list[float], n: int) -> None:
        for _ in range(n):
            a = time.perf_counter()
            step()
            out.append(time.perf_counter() - a)

    with torch.inference_mode():
        for _, start in engines:
            block(start(), [], warmup)
        # Blocks alternate; each starts again from the warm state (a KV cache grows a token a
        # step, so a block sees contexts context..context+BLOCK).
        while len(times[engines[0][0]]) < steps:
            for name, start in engines:
                block(start(), times[name], min(BLOCK, steps - len(times[name])))
    return BenchResult(
        model=str(mf.path),
        family=info.family,
        params=sum(p.numel() for p in model.parameters()),
        context=context,
        steps=steps,
        threads=threads,
        rows=[_summary(name, t) for name, t in times.items()],
        int8=int8,
        provider=mf.provider,
    )


def _ort_engine(mf: ModelFile, model: nn.Module, context: int, seed: int) -> Engine:
    pairs = mf.info.signature.state
    if any(p.inplace for p in pairs):
        stepper = mf.stepper()
        rng = np.random.default_rng(seed)
        warm = stepper.feed(stepper.empty(), rng.integers(0, len(mf.info.vocab), context).tolist())
        token = [int(rng.integers(0, len(mf.info.vocab)))]

        def start_tokens() -> Step:
            state = [warm]

            def step() -> None:
                state[0] = stepper.feed(state[0], token)

            return step

        return "onnxruntime", start_tokens
    graph = graph_for(mf.info.family, model)
    return "onnxruntime", _state_steps(mf.run, graph, pairs, context, seed)


def _eager(family: str, model: nn.Module, context: int, seed: int) -> Callable[[], Step]:
    graph = graph_for(family, model)
    if isinstance(graph, TokenKVGraph):
        return _kv_eager(model, context, seed)
    return _state_steps(graph.run, graph, graph.signature().state, context, seed)


def _kv_eager(model: nn.Module, context: int, seed: int) -> Callable[[], Step]:
    """The transformer as torch runs it: its own forward over a KV cache grown by
    concatenation, as a torch user would decode (no buffers, no numpy)."""
    rng = np.random.default_rng(seed)
    vocab = model.config.vocab_size
    prefix = torch.from_numpy(rng.integers(0, vocab, (1, context)))
    token = torch.tensor([[int(rng.integers(0, vocab))]])
    with torch.inference_mode():
        _, warm = model(prefix, torch.arange(context)[None], model.empty_cache())

    def start() -> Step:
        state = [warm, context]

        def step() -> None:
            _, state[0] = model(token, torch.tensor([[state[1]]]), state[0])
            state[1] += 1

        return step

    return start


def _state_steps(run, graph, pairs, context: int, seed: int) -> Callable[[], Step]:  # type: ignore[no-untyped-def]
    """Steps through ``run`` on named numpy inputs, each fed the state the previous one
    produced, as the daemon does."""
    feed = graph.feed(seq=1, past=context, seed=seed)

    def start() -> Step:
        current = [dict(feed)]

        def step() -> None:
            out = run(current[0])
            nxt = {**current[0], **{p.input: out[p.output] for p in pairs}}
            if "positions" in nxt:
                nxt["positions"] = nxt["positions"] + 1
            current[0] = nxt

        return step

    return start


def format_table(r: BenchResult) -> str:
    lines = [
        f"model {r.model} ({r.family}, {r.params:,} parameters"
        f"{', int8 dynamic quantization' if r.int8 else ''})",
        f"per-step decode, batch 1, warm state of {r.context} steps, {r.steps} steps, "
        f"{r.threads} thread(s); onnxruntime on {r.provider}, torch eager on cpu",
        f"{'engine':<18}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'tokens/s':>11}",
    ]
    for row in r.rows:
        lines.append(
            f"{row.engine:<18}{row.p50_ms:>9.3f}{row.p90_ms:>9.3f}{row.p99_ms:>9.3f}"
            f"{row.tokens_per_s:>11.0f}"
        )
    for engine, ratio in r.speedups.items():
        lines.append(f"onnxruntime is {ratio:.2f}x faster than {engine} at p50")
    return "\n".join(lines)
