"""MusicVAE's voice: the player's phrase encoded to a latent, answered from latents near it.

Hearing keeps the notes of the last bars (``models.midi.melody.hear``); an answer reads the
phrase as a melody (its skyline, from its first note, ``steps`` sixteenths long), encodes it
once to the posterior's mean ``mu`` and decodes phrases of ``steps`` from latents chosen here,
outside the graph, with the daemon's seeded sampler:

- ``vary`` (``--mode vary``): every phrase of the answer is a variation of the player's,
  ``z = s * mu + sqrt(1 - s^2) * eps`` with ``s`` the similarity (``--similarity``, a CC):
  1 keeps the phrase's own latent (at ``--temperature 0`` the phrase as the model
  reconstructs it), 0 is a draw from the prior (anything), and between the two the latent
  keeps the prior's scale;
- ``plan`` (respond, accompany, ``continue``): each phrase a variation of the one before it
  (the player's first), a walk that drifts away at the same rate;
- ``interpolate``: phrases decoded along the great circle from one latent to another
  (``continue --interpolate``: a morph from one file's phrase to another's).

The decoder is run a step at a time and its events sampled here (temperature, top-p);
a hierarchical model's conductor runs once per latent, and the decoder's state is set from
each section's vector as the section starts. The graph's names are declared here once
(``export.vae_graph`` imports them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from antiphon.contract import Signature
from antiphon.live.engine import PlanStep
from antiphon.live.sampling import Sampler
from antiphon.live.session import ModelFile
from antiphon.live.stepper import RunFn
from antiphon.models.midi.codec import Decoded
from antiphon.models.midi.melody import (
    FIRST_PITCH,
    NO_EVENT,
    HeardNote,
    MelodyRange,
    hear,
    note_count,
    skyline,
)
from antiphon.models.midi.notes import Grid, TickEvents

INPUTS = ["melody", "z", "tokens", "condition", "past_h", "past_c"]
OUTPUTS = ["mu", "sigma", "conductor", "logits", "present_h", "present_c"]
DEFAULT_VELOCITY = 80
RECENT_VELOCITIES = 16
DEFAULT_SIMILARITY = 0.5


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The point ``t`` of the way from ``a`` to ``b`` on the great circle (Magenta's
    interpolation: a straight line would pass through the low-density middle of the prior)."""
    if t in (0.0, 1.0):  # the ends exactly: the morph starts and ends on the phrases
        return a if t == 0.0 else b
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return (1 - t) * a + t * b
    omega = np.arccos(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def varied(mu: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    s = float(np.clip(similarity, 0.0, 1.0))
    return s * mu + np.sqrt(1.0 - s * s) * rng.standard_normal(mu.shape).astype(np.float32)


class VAEStepper:
    """The exported graph's parts through any ``run(feed)`` (onnxruntime live, torch or
    onnxruntime in export verification): each call feeds empty tensors to the parts it
    does not use, whose gates then skip them."""

    def __init__(self, run: RunFn, signature: Signature, config: dict) -> None:
        self.run = run
        layers, _, hidden = signature.inputs["past_h"]
        self.z_size = int(config["z_size"])
        self.cond_size = int(signature.inputs["condition"][1])
        self.classes = int(signature.outputs["logits"][2])
        self.start = self.classes  # the start symbol's index (one past the classes)
        self.steps = int(config["bars"]) * int(config["steps_per_bar"])
        per = int(config.get("bars_per_section", 0))
        self.section = self.steps if per <= 0 else per * int(config["steps_per_bar"])
        self.empty = {
            "melody": np.zeros((1, 0), dtype=np.int64),
            "z": np.zeros((1, 0), dtype=np.float32),
            "tokens": np.zeros((1, 0), dtype=np.int64),
            "condition": np.zeros((1, self.cond_size), dtype=np.float32),
            "past_h": np.zeros((layers, 1, hidden), dtype=np.float32),
            "past_c": np.zeros((layers, 1, hidden), dtype=np.float32),
        }

    def encode(self, melody: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        out = self.run({**self.empty, "melody": np.asarray([melody], dtype=np.int64)})
        return out["mu"][0], out["sigma"][0]

    def conduct(self, z: np.ndarray) -> np.ndarray:
        """(Z,) -> (sections, C) conditioning vectors."""
        out = self.run({**self.empty, "z": np.asarray(z, dtype=np.float32)[None]})
        return out["conductor"][0]

    def begin(self, condition: np.ndarray) -> dict[str, np.ndarray]:
        out = self.run({**self.empty, "condition": condition[None].astype(np.float32)})
        return {"past_h": out["present_h"], "past_c": out["present_c"]}

    def step(
        self, state: dict[str, np.ndarray], condition: np.ndarray, token: int
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits (classes,) of the event after ``token`` and the state after it."""
        feed = {
            **self.empty,
            "tokens": np.asarray([[token]], dtype=np.int64),
            "condition": condition[None].astype(np.float32),
            **state,
        }
        out = self.run(feed)
        return out["logits"][0, -1], {"past_h": out["present_h"], "past_c": out["present_c"]}

    def decode(
        self,
        z: np.ndarray,
        choose,
        previous: int | None = None,  # type: ignore[no-untyped-def]
    ) -> Iterator[int]:
        """The events of one phrase from ``z``, each picked by ``choose(logits, step)``."""
        conditions = self.conduct(z)
        token = self.start if previous is None else previous
        for s in range(self.steps):
            if s % self.section == 0:
                cond = conditions[s // self.section]
                state = self.begin(cond)
            logits, state = self.step(state, cond, token)
            token = int(choose(logits, s))
            yield token

    def greedy(self, melody: Sequence[int]) -> list[int]:
        """The phrase's reconstruction from its posterior mean, argmax at every step."""
        mu, _ = self.encode(melody)
        return list(self.decode(mu, lambda logits, s: int(np.argmax(logits))))

    def teacher_forced(self, melody: Sequence[int], z: np.ndarray) -> np.ndarray:
        """(T, classes) logits of each event of ``melody`` given the ones before it."""
        conditions = self.conduct(z)
        rows = []
        previous = [self.start, *melody[:-1]]
        for s0 in range(0, len(melody), self.section):
            cond = conditions[s0 // self.section]
            out = self.run(
                {
                    **self.empty,
                    "tokens": np.asarray([previous[s0 : s0 + self.section]], dtype=np.int64),
                    "condition": cond[None].astype(np.float32),
                    **self.begin(cond),
                }
            )
            rows.append(out["logits"][0])
        return np.concatenate(rows)


@dataclass(frozen=True)
class VAEState:
    notes: tuple[HeardNote, ...] = ()
    velocities: tuple[int, ...] = ()
    last_tick: int = 0


class VAEVoice:
    def __init__(self, model: ModelFile, *, max_gap_beats: float | None = None) -> None:
        info = model.info
        self.model = model
        self.grid = Grid.from_dict(info.grid)
        self.range = MelodyRange(int(info.config["pitch_lo"]), int(info.config["n_pitches"]))
        self.stepper = VAEStepper(model.run, info.signature, info.config)
        self.steps = self.stepper.steps
        self.stepper.greedy([NO_EVENT] * self.steps)  # a session's first runs are slow

    @property
    def family(self) -> str:
        return self.model.info.family

    def empty(self) -> VAEState:
        return VAEState()

    def observe(self, state: VAEState, ticks: Iterable[TickEvents]) -> VAEState:
        ticks = list(ticks)
        if not ticks:
            return state
        notes = hear(state.notes, ticks, keep=4 * self.steps)
        velocities = (*state.velocities, *(n.velocity for ev in ticks for n in ev.ons))
        return VAEState(notes, velocities[-RECENT_VELOCITIES:], ticks[-1].tick)

    def phrase(self, state: VAEState, end: int) -> np.ndarray | None:
        """The melody of the last phrase heard before ``end``: ``steps`` events from its
        first note within the last ``steps`` ticks; None if nothing was played there."""
        recent = [n for n in state.notes if end - self.steps <= n.start < end]
        if not recent:
            return None
        start = min(n.start for n in recent)
        notes = [n if n.end is not None else HeardNote(n.start, n.pitch, end) for n in recent]
        return skyline(notes, start, self.steps, self.range)

    def velocity(self, state: VAEState) -> int:
        if not state.velocities:
            return DEFAULT_VELOCITY
        return self.grid.velocity(round(sum(state.velocities) / len(state.velocities)))

    # -- playing -------------------------------------------------------------------------------
    def plan(
        self,
        state: VAEState,
        ticks: Iterable[TickEvents],
        *,
        start_tick: int,
        until_tick: int,
        sampler: Sampler,
        note_first: bool = True,
    ) -> Iterator[PlanStep]:
        return self._answer(state, ticks, start_tick, until_tick, sampler, note_first, False)

    def vary(
        self,
        state: VAEState,
        ticks: Iterable[TickEvents],
        *,
        start_tick: int,
        until_tick: int,
        sampler: Sampler,
        note_first: bool = True,
    ) -> Iterator[PlanStep]:
        return self._answer(state, ticks, start_tick, until_tick, sampler, note_first, True)

    def _answer(self, state, ticks, start, until, sampler, note_first, anchored):  # type: ignore[no-untyped-def]
        state = self.observe(state, ticks)
        melody = self.phrase(state, start)
        similarity = getattr(sampler.sampling, "similarity", DEFAULT_SIMILARITY)
        if melody is None or note_count(melody) == 0:
            mu = np.zeros(self.stepper.z_size, dtype=np.float32)
            similarity = 0.0  # nothing heard: a phrase from the prior
        else:
            mu = self.stepper.encode(melody.tolist())[0]

        def latents() -> Iterator[np.ndarray]:
            z = mu
            while True:
                z = varied(mu if anchored else z, similarity, sampler.rng)
                yield z

        return self._play(latents(), start, until, sampler, note_first, self.velocity(state))

    def interpolate(
        self,
        state: VAEState,
        other: Iterable[TickEvents],
        *,
        start_tick: int,
        phrases: int,
        sampler: Sampler,
    ) -> Iterator[PlanStep]:
        """``phrases`` phrases from the latent of the last phrase heard (``state``) to that
        of the first phrase of ``other``'s ticks, both ends included, one after another
        from ``start_tick``."""
        a = self.phrase(state, start_tick)
        heard = hear((), other, keep=1 << 62)
        first = min(n.start for n in heard)
        ended = [n if n.end is not None else HeardNote(n.start, n.pitch, first + self.steps)
                 for n in heard]  # fmt: skip
        b = skyline(ended, first, self.steps, self.range)
        origin = np.zeros(self.stepper.z_size, np.float32)  # nothing heard: the prior's centre
        ends = [origin if m is None else self.stepper.encode(m.tolist())[0] for m in (a, b)]
        ts = [0.0] if phrases == 1 else [i / (phrases - 1) for i in range(phrases)]
        zs = (slerp(ends[0], ends[1], t).astype(np.float32) for t in ts)
        until = start_tick + phrases * self.steps
        return self._play(zs, start_tick, until, sampler, False, self.velocity(state))

    def _play(
        self,
        latents: Iterator[np.ndarray],
        start: int,
        until: int,
        sampler: Sampler,
        note_first: bool,
        velocity: int,
    ) -> Iterator[PlanStep]:
        onset_only = np.zeros(self.stepper.classes, dtype=bool)
        onset_only[FIRST_PITCH:] = True
        sounding: int | None = None
        tick, previous = start, None
        first = note_first
        while tick < until:
            z = next(latents)

            def choose(logits: np.ndarray, s: int, opening: bool = first) -> int:
                return sampler(logits, onset_only if opening and s == 0 else None)

            for event in self.stepper.decode(z, choose, previous):
                previous = event
                out: list[Decoded] = []
                if event != NO_EVENT and sounding is not None:
                    out.append(Decoded(tick, "off", sounding))
                    sounding = None
                if event >= FIRST_PITCH:
                    sounding = self.range.pitch(event)
                    out.append(Decoded(tick, "on", sounding, velocity))
                first = False
                tick += 1
                yield PlanStep(out, tick)
                if tick >= until:
                    break
        release = [] if sounding is None else [Decoded(until, "off", sounding)]
        yield PlanStep(release, until, tokens=0)
