"""``antiphon bench``: per-step decode latency, onnxruntime vs torch eager, in one run.

Both run the same weights at batch 1 with a warm state of ``context`` steps, on the same
number of threads, on the same inputs. They alternate in blocks of ``BLOCK`` steps, so
machine noise hits both alike while each keeps its own weights in cache between its steps,
as it would in the daemon (alternating every single step would make each engine evict the
other's weights and time memory traffic instead of the engine). The ratio is of medians.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from antiphon.export.graphs import graph_for
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

    @property
    def speedup(self) -> float:
        ort, eager = self.rows[0], self.rows[1]
        return eager.p50_ms / ort.p50_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "speedup_p50": self.speedup}


def _summary(name: str, seconds: list[float]) -> Latency:
    ms = np.asarray(seconds) * 1e3
    return Latency(
        name,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 90)),
        float(np.percentile(ms, 99)),
        float(1e3 / ms.mean()),
    )


def bench(
    model_path: str | Path | None = None,
    *,
    context: int = 256,
    steps: int = 200,
    warmup: int = 20,
    threads: int = 1,
    seed: int = 0,
) -> BenchResult:
    """One model step (one token, frame or note) after a warm state of ``context`` steps."""
    mf = ModelFile.open(model_path, threads=threads)
    info = mf.info
    torch.set_num_threads(threads)
    model = torch_from_onnx(mf.path)
    graph = graph_for(info.family, model)
    context = min(context, info.max_context - 1)
    feed = graph.feed(seq=1, past=context, seed=seed)
    pairs = info.signature.state
    t_ort: list[float] = []
    t_eager: list[float] = []

    def block(run, times: list[float], n: int) -> None:  # type: ignore[no-untyped-def]
        # Each step feeds the state the previous one produced, as the daemon does (a KV
        # cache grows a token a step); every block starts again from the warm state.
        current = dict(feed)
        for _ in range(n):
            a = time.perf_counter()
            out = run(current)
            times.append(time.perf_counter() - a)
            current = {**current, **{p.input: out[p.output] for p in pairs}}
            if "positions" in current:
                current["positions"] = current["positions"] + 1

    with torch.inference_mode():
        for run in (mf.run, graph.run):
            block(run, [], warmup)
        while len(t_ort) < steps:
            for run, times in ((mf.run, t_ort), (graph.run, t_eager)):
                block(run, times, min(BLOCK, steps - len(times)))
    return BenchResult(
        model=str(mf.path),
        family=info.family,
        params=sum(p.numel() for p in model.parameters()),
        context=context,
        steps=steps,
        threads=threads,
        rows=[_summary("onnxruntime", t_ort), _summary("torch eager", t_eager)],
    )


def format_table(r: BenchResult) -> str:
    lines = [
        f"model {r.model} ({r.family}, {r.params:,} parameters)",
        f"per-step decode, batch 1, warm state of {r.context} steps, {r.steps} steps, "
        f"{r.threads} thread(s)",
        f"{'engine':<14}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'tokens/s':>11}",
    ]
    for row in r.rows:
        lines.append(
            f"{row.engine:<14}{row.p50_ms:>9.3f}{row.p90_ms:>9.3f}{row.p99_ms:>9.3f}"
            f"{row.tokens_per_s:>11.0f}"
        )
    lines.append(f"onnxruntime is {r.speedup:.2f}x faster than torch eager at p50")
    return "\n".join(lines)
