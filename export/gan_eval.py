"""``antiphon eval --gan M.onnx``: C-RNN-GAN's measures and the diversity of a model's music,
beside the same figures for the training data.

N places are drawn from the corpus's training split (a seeded choice of a piece and a bar in
it): the ``PROMPT_BARS`` bars before the place are the prompt, the ``bars`` after it the
**data** sample; the model hears the prompt through its voice (as ``antiphon continue``
does) and plays the same number of bars, the **generated** sample, with its own seed each.
Both sets get the four measures of ``models.gan_metrics`` (mean ± std over samples) and the
diversity of ``models.diversity`` (distinct bars, mean pairwise distance), so mode collapse
shows as generated diversity far below the data's. For a melody family (``midinet``, which
writes the top line) the data sample is the skyline melody of those bars, what it learnt
from. Works for any family that plays notes, not only the GANs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from antiphon.errors import UserError
from antiphon.live.continuation import PROMPT_GAP_BEATS
from antiphon.live.engine import open_voice
from antiphon.live.sampling import Sampler, Sampling
from antiphon.live.session import ModelFile
from antiphon.models.corpus import resolve_corpus
from antiphon.models.dataset import cache_root
from antiphon.models.diversity import STEPS_PER_BAR, Diversity, diversity, roll_of_notes
from antiphon.models.gan_metrics import MEASURES, Summary, summarize
from antiphon.models.midi.bars import bar_of_notes, melody_notes
from antiphon.models.midi.notes import MidiFileError, file_ticks, read_performance

PROMPT_BARS = 2
MAX_TRIES = 20  # draws per sample before a corpus is called too short

Notes = list[tuple[int, int, int]]


@dataclass
class GanEval:
    model: str
    family: str
    corpus: str
    samples: int
    bars: int
    generated: dict[str, Summary]
    data: dict[str, Summary]
    generated_diversity: Diversity
    data_diversity: Diversity
    notes: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        rows = [
            f"{self.model} ({self.family}): {self.samples} samples of {self.bars} bars after "
            f"{PROMPT_BARS}-bar prompts from {self.corpus}'s training split",
            f"{'measure':<20}{'generated':>20}{'training data':>20}",
        ]
        for name in MEASURES:
            rows.append(f"{name:<20}{self.generated[name]!s:>20}{self.data[name]!s:>20}")
        for name in ("distinct_bars", "mean_distance"):
            g, d = getattr(self.generated_diversity, name), getattr(self.data_diversity, name)
            rows.append(f"{name:<20}{g:>20.3f}{d:>20.3f}")
        rows.append(
            f"{'notes':<20}{self.notes.get('generated', 0):>20}{self.notes.get('data', 0):>20}"
        )
        return "\n".join(rows)

    def to_dict(self) -> dict:
        def s(d: dict[str, Summary]) -> dict:
            return {k: {"mean": v.mean, "std": v.std} for k, v in d.items()}

        return {
            "model": self.model,
            "family": self.family,
            "corpus": self.corpus,
            "samples": self.samples,
            "bars": self.bars,
            "generated": s(self.generated),
            "data": s(self.data),
            "generated_diversity": self.generated_diversity.to_dict(),
            "data_diversity": self.data_diversity.to_dict(),
            "notes": self.notes,
        }


def _pair(events: list, origin: int) -> Notes:
    open_: dict[int, list[int]] = {}
    notes: Notes = []
    for e in events:
        if e.kind == "on":
            open_.setdefault(e.pitch, []).append(e.tick)
        elif e.kind == "off" and open_.get(e.pitch):
            start = open_[e.pitch].pop(0)
            notes.append((start - origin, max(e.tick, start + 1) - origin, e.pitch))
    return sorted(notes)


def evaluate_gan(
    model: str | Path,
    data: str = "music21",
    *,
    samples: int = 64,
    bars: int = 4,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    provider: str = "auto",
) -> GanEval:
    if samples < 2 or bars < 1:
        raise UserError("--gan-samples must be at least 2 (diversity compares pairs)")
    mf = ModelFile.open(model, provider=provider)
    voice = open_voice(mf, max_gap_beats=PROMPT_GAP_BEATS)
    grid = voice.grid
    step_ticks = grid.tpq // 4
    bar_ticks = STEPS_PER_BAR * step_ticks
    melody = mf.info.representation == "bars"
    corpus = resolve_corpus(data, cache_dir=cache_root())
    files = corpus.split("train")
    if not files:
        raise UserError(f"{data}: no training files to compare with")
    rng = np.random.default_rng(seed)
    gen_notes: list[Notes] = []
    data_notes: list[Notes] = []
    for i in range(samples):
        for _ in range(MAX_TRIES):
            path = files[int(rng.integers(len(files)))]
            try:
                perf = read_performance(path, grid)
            except MidiFileError:
                continue
            n_bars = perf.end // bar_ticks
            if n_bars >= PROMPT_BARS + bars:
                break
        else:
            raise UserError(f"{data}: too few pieces of {PROMPT_BARS + bars} bars or more")
        k = int(rng.integers(PROMPT_BARS, n_bars - bars + 1))
        start, end = k * bar_ticks, (k + bars) * bar_ticks
        spans = [(n.start, n.end or n.start + 1, n.pitch) for n in perf.notes]
        if melody:
            ref: Notes = []
            for b in range(bars):
                a = start + b * bar_ticks
                line, _ = bar_of_notes(spans, a, step_ticks)
                ref += melody_notes(line.tolist(), a - start, step_ticks)
        else:
            ref = [(a - start, min(e, end) - start, p) for a, e, p in spans if start <= a < end]
        data_notes.append(ref)
        ticks = [t for t in file_ticks(path, grid) if t.tick < start]
        state = voice.observe(voice.empty(), ticks)
        sampler = Sampler(Sampling(temperature, top_p, seed + i))
        events = [
            e
            for s in voice.plan(
                state, [], start_tick=start, until_tick=end, sampler=sampler, note_first=False
            )
            for e in s.events
        ]
        gen_notes.append(_pair(events, start))

    def rolls(sets: list[Notes]) -> np.ndarray:
        return np.stack([roll_of_notes(s, bars * STEPS_PER_BAR, step_ticks) for s in sets])

    return GanEval(
        model=str(model),
        family=mf.info.family,
        corpus=corpus.name,
        samples=samples,
        bars=bars,
        generated=summarize(gen_notes),
        data=summarize(data_notes),
        generated_diversity=diversity(rolls(gen_notes)),
        data_diversity=diversity(rolls(data_notes)),
        notes={"generated": sum(map(len, gen_notes)), "data": sum(map(len, data_notes))},
    )
