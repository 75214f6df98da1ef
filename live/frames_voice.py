"""The piano-roll families' voice: closed ticks in as frames, frames out as notes.

Hearing: ``FrameCursor`` (``models.midi.polyphonic``, the code training reads files with)
cuts the closed ticks into frames of ``frame_ticks`` — the keys sounding in each, silent frames
included — and the completed frames go through the graph in one run, updating the
recurrent state (O(1) per frame however long the session).

Playing: frames are generated on the absolute frame grid from the first frame boundary at
or after ``start_tick``. A key entering the frame set is a note-on at its frame's start, a
key leaving it a note-off; everything still sounding ends at ``until_tick``. Velocity: the
mean of the last notes heard (80 before any). Keys are Bernoulli draws with the sampler's
temperature; ``top_p`` acts per key as nucleus sampling does on a two-outcome distribution
(a key more likely than ``top_p`` is always down, one less likely than ``1 - top_p`` never),
which keeps 88 small probabilities from adding up to stray notes.

The NADE head is sampled key by key, low to high, with onnxruntime: the graph run on the
partial frame gives every key's logit given the keys below it, so keys are drawn from the
lowest undecided one until one goes down; only then is the graph run again (the logits of
the keys above a key left up do not change). A frame with m keys down costs m + 1 runs; the
last run, on the finished frame, also yields the state after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from antiphon.contract import Signature
from antiphon.live.engine import PlanStep
from antiphon.live.sampling import Sampler
from antiphon.live.session import ModelFile
from antiphon.models.midi.codec import Decoded
from antiphon.models.midi.notes import Grid, TickEvents
from antiphon.models.midi.polyphonic import FrameCursor, frames_to_roll

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Decide = Callable[[np.ndarray], np.ndarray]  # logits of keys i.. -> which of them go down
Arrays = dict[str, np.ndarray]
DEFAULT_VELOCITY = 80
RECENT_NOTES = 16  # velocity follows the mean of this many notes heard
FIRST_FRAME_TRIES = 4  # note_first: draws of the first frame before forcing its likeliest key


def greedy_keys(logits: np.ndarray) -> np.ndarray:
    return logits > 0.0


def bernoulli_keys(sampler: Sampler) -> Decide:
    def decide(logits: np.ndarray) -> np.ndarray:
        s = sampler.sampling
        if s.temperature <= 0:
            return logits > 0.0
        p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64) / s.temperature))
        if s.top_p < 1.0:
            p = np.where(p >= s.top_p, 1.0, np.where(p <= 1.0 - s.top_p, 0.0, p))
        return sampler.rng.random(p.shape) < p

    return decide


class FrameStepper:
    """Runs a frames graph (``export.frames_graph``) through any ``run`` (onnxruntime live,
    torch or onnxruntime in export verification)."""

    def __init__(self, run: RunFn, signature: Signature, n_keys: int, independent: bool):
        self.run, self.pairs, self.n_keys = run, signature.state, n_keys
        self.independent = independent  # sigmoid head: keys do not depend on each other

    def empty(self) -> Arrays:
        shape = lambda p: [1 if d == "batch" else d for d in p.shape]  # noqa: E731
        return {p.input: np.zeros(shape(p), dtype=np.float32) for p in self.pairs}

    def _run(self, state: Arrays, frames: np.ndarray) -> tuple[np.ndarray, Arrays]:
        out = self.run({"frames": frames[None].astype(np.float32), **state})
        return out["logits"][0], {p.input: out[p.output] for p in self.pairs}

    def feed(self, state: Arrays, roll: np.ndarray) -> Arrays:
        """The state after hearing ``roll`` (T, K) (one run, however many frames)."""
        return self._run(state, roll)[1] if len(roll) else state

    def sample(
        self, state: Arrays, decide: Decide, force: int | None = None
    ) -> tuple[np.ndarray, Arrays, int]:
        """One frame: (keys down, state after it, graph runs). ``force`` puts one key down
        first (the keys below it stay up)."""
        frame = np.zeros(self.n_keys, dtype=np.float32)
        i = 0
        if force is not None:
            frame[force], i = 1.0, force + 1
        logits, after = self._run(state, frame[None])
        runs = 1
        if self.independent:
            frame[i:] = np.maximum(frame[i:], decide(logits[0, i:]))
            if frame.any():
                _, after = self._run(state, frame[None])
                runs += 1
            return np.flatnonzero(frame), after, runs
        while i < self.n_keys:
            down = np.flatnonzero(decide(logits[0, i:]))
            if not down.size:
                break
            i += int(down[0])
            frame[i] = 1.0
            logits, after = self._run(state, frame[None])
            runs += 1
            i += 1
        return np.flatnonzero(frame), after, runs

    def first_logits(self, state: Arrays) -> np.ndarray:
        """Every key's logit with the keys below it up."""
        return self._run(state, np.zeros((1, self.n_keys), dtype=np.float32))[0][0]


@dataclass(frozen=True)
class FrameState:
    arrays: Arrays
    cursor: FrameCursor
    velocities: tuple[int, ...] = ()  # of the last notes heard


class FrameVoice:
    def __init__(self, model: ModelFile, *, max_gap_beats: float | None = None) -> None:
        info = model.info
        self.model = model
        self.grid = Grid.from_dict(info.grid)
        cfg = info.config
        self.frame_ticks = int(cfg["frame_ticks"])
        self.pitch_lo, self.n_keys = int(cfg["pitch_lo"]), int(cfg["n_keys"])
        self.stepper = FrameStepper(
            model.run, info.signature, self.n_keys, cfg.get("head") == "sigmoid"
        )
        # A long pause is heard as at most this many silent frames (the daemon's choice).
        self.max_gap = (
            None
            if max_gap_beats is None
            else max(1, round(max_gap_beats * self.grid.tpq / self.frame_ticks))
        )

    @property
    def family(self) -> str:
        return self.model.info.family

    def empty(self) -> FrameState:
        cursor = FrameCursor(self.frame_ticks, self.pitch_lo, self.n_keys)
        state = FrameState(self.stepper.empty(), cursor)
        self.stepper.first_logits(state.arrays)  # warms the session up
        return state

    def observe(self, state: FrameState, ticks: Iterable[TickEvents]) -> FrameState:
        ticks = list(ticks)
        if not ticks:
            return state
        cursor, frames = state.cursor.hear(ticks, self.max_gap)
        velocities = state.velocities + tuple(n.velocity for ev in ticks for n in ev.ons)
        arrays = self.stepper.feed(state.arrays, frames_to_roll(frames, self.n_keys))
        return FrameState(arrays, cursor, velocities[-RECENT_NOTES:])

    def velocity(self, state: FrameState) -> int:
        if not state.velocities:
            return DEFAULT_VELOCITY
        return self.grid.velocity(round(float(np.mean(state.velocities))))

    def plan(
        self,
        state: FrameState,
        ticks: Iterable[TickEvents],
        *,
        start_tick: int,
        until_tick: int,
        sampler: Sampler,
        note_first: bool = True,
    ) -> Iterator[PlanStep]:
        state = self.observe(state, ticks)
        first = -(-start_tick // self.frame_ticks)  # first frame boundary at or after start
        _, frames = state.cursor.close_before(first, self.max_gap)
        arrays = self.stepper.feed(state.arrays, frames_to_roll(frames, self.n_keys))
        return self._generate(arrays, first, until_tick, sampler, note_first, self.velocity(state))

    def _generate(
        self,
        arrays: Arrays,
        frame: int,
        until: int,
        sampler: Sampler,
        note_first: bool,
        velocity: int,
    ) -> Iterator[PlanStep]:
        decide = bernoulli_keys(sampler)
        sounding: set[int] = set()
        need_note = note_first
        while frame * self.frame_ticks < until:
            tick = frame * self.frame_ticks
            keys, after, runs = self.stepper.sample(arrays, decide)
            if need_note and not keys.size:
                keys, after, more = self._some_note(arrays, decide)
                runs += more
            need_note = need_note and not keys.size
            down = {self.pitch_lo + int(k) for k in keys}
            events = [Decoded(tick, "off", p) for p in sorted(sounding - down)]
            events += [Decoded(tick, "on", p, velocity) for p in sorted(down - sounding)]
            sounding, arrays, frame = down, after, frame + 1
            yield PlanStep(events, min(frame * self.frame_ticks, until), tokens=runs)
        yield PlanStep([Decoded(until, "off", p) for p in sorted(sounding)], until, tokens=0)

    def _some_note(self, arrays: Arrays, decide: Decide) -> tuple[np.ndarray, Arrays, int]:
        """A first frame with a key down: a few more draws, then the likeliest key forced
        (and the keys above it drawn given it)."""
        runs = 0
        for _ in range(FIRST_FRAME_TRIES - 1):
            keys, after, n = self.stepper.sample(arrays, decide)
            runs += n
            if keys.size:
                return keys, after, runs
        top = int(np.argmax(self.stepper.first_logits(arrays)))
        keys, after, n = self.stepper.sample(arrays, decide, force=top)
        return keys, after, runs + n + 1
