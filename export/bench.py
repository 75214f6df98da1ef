"""``antiphon bench``: per-token decode latency, onnxruntime vs torch eager, in one run.

Both run the same weights at batch 1 with a warm cache of ``context`` tokens, on the same
number of threads, through the same stepping code; each iteration times one ORT step and one
torch step back to back, so machine noise hits both alike. The ratio is of medians.
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
from antiphon.live.stepper import TokenStepper


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
    mf = ModelFile.open(model_path, threads=threads)
    info = mf.info
    torch.set_num_threads(threads)
    model = torch_from_onnx(mf.path)
    context = min(context, info.max_context - 1)
    run_torch = graph_for(info.family, model).run
    ort_step = TokenStepper(mf.run, info.signature, info.max_context)
    eager_step = TokenStepper(run_torch, info.signature, info.max_context)
    rng = np.random.default_rng(seed)
    prompt = rng.integers(4, len(info.vocab), size=context).tolist()
    s_ort = ort_step.feed(ort_step.empty(), prompt)
    s_eager = eager_step.feed(eager_step.empty(), prompt)
    t_ort: list[float] = []
    t_eager: list[float] = []
    token = int(prompt[-1])
    with torch.inference_mode():
        for i in range(warmup + steps):
            a = time.perf_counter()
            ort_step.feed(s_ort, [token])
            b = time.perf_counter()
            eager_step.feed(s_eager, [token])
            c = time.perf_counter()
            if i >= warmup:
                t_ort.append(b - a)
                t_eager.append(c - b)
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
        f"per-token decode, batch 1, warm cache of {r.context} tokens, {r.steps} steps, "
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
