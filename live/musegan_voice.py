"""MuseGAN's voice: phrases of four voices from latents; in ``accompany`` around the player.

One graph run (``export.musegan_graph``) gives a whole phrase, ``bars`` bars of every
track, as key probabilities; the voice draws the latents from the session's seeded
sampler and the keys from the probabilities: at ``--temperature 0`` a key sounds where
its probability is over 1/2 (a monophonic track: its likeliest key, or a rest where that
is likelier; ``keys_down``), otherwise each step is a draw from the probability
sharpened or flattened by the temperature. The tracks sound together on the daemon's
channel (a pitch two voices share sounds once).

- ``plan`` (respond, ``continue``): phrases from scratch (``given = 0``), all tracks, one
  after another from the start;
- ``accompany`` (``--mode accompany``): the player's line is the given track
  (``accompany_track``, the top voice by default) and the other voices are played around
  it. The phrase is the ``bars`` bars ending at the first barline after now; what the
  player played in it is the condition, a key still down heard as held to the phrase's
  end (the next note re-plans, as accompaniment always does). Only the voices not given
  are played, from now to the phrase's end.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from antiphon.live.engine import PlanStep
from antiphon.live.sampling import Sampler
from antiphon.live.session import ModelFile
from antiphon.live.stepper import RunFn
from antiphon.models.midi.codec import Decoded
from antiphon.models.midi.melody import HeardNote, hear
from antiphon.models.midi.multitrack import keys_down, roll, roll_notes
from antiphon.models.midi.notes import Grid, TickEvents

INPUTS = ["z_shared", "z_shared_t", "z_private", "z_private_t", "condition", "given"]
DEFAULT_VELOCITY = 72
RECENT_VELOCITIES = 16


def notes_of(keys: np.ndarray, pitch_lo: int) -> list[tuple[int, int, int, int]]:
    """(track, start step, end step, pitch) of (tracks, bars, steps, pitches) keys; a
    note held over a barline is one note."""
    tracks, bars, steps, pitches = keys.shape
    out = []
    for t in range(tracks):
        out += [(t, *n) for n in roll_notes(keys[t].reshape(bars * steps, pitches), pitch_lo)]
    return out


class MuseGANStepper:
    """The generator through any ``run(feed)`` (onnxruntime live, torch or onnxruntime in
    verification)."""

    def __init__(self, run: RunFn, config: dict) -> None:
        self.run = run
        self.tracks, self.bars = int(config["tracks"]), int(config["bars"])
        self.steps = int(config["beats_per_bar"]) * int(config["steps_per_beat"])
        self.pitch_lo, self.pitches = int(config["pitch_lo"]), int(config["n_pitches"])
        self.z = int(config["z_size"])
        # Grid steps each generator step is held over, and one key a track at a time (files
        # exported before either existed, or a model never trained, with its note grid
        # still 0: every step its own, keys independent).
        per_beat = int(config["steps_per_beat"])
        self.hold = per_beat // (int(config.get("note_steps_per_beat") or per_beat))
        self.monophonic = bool(config.get("monophonic", False))

    def latents(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        z = lambda *shape: rng.standard_normal((1, *shape)).astype(np.float32)  # noqa: E731
        return {
            "z_shared": z(self.z),
            "z_shared_t": z(self.z),
            "z_private": z(self.tracks, self.z),
            "z_private_t": z(self.tracks, self.z),
        }

    def generate(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """(tracks, bars, steps, pitches) key probabilities of one phrase."""
        return self.run(feed)["probs"][0]

    def phrase(self, rng: np.random.Generator, condition: np.ndarray | None = None) -> np.ndarray:
        """Probabilities of a phrase from fresh latents, around ``condition`` (bars,
        steps, pitches) when given."""
        given = condition is not None
        if condition is None:
            condition = np.zeros((self.bars, self.steps, self.pitches), dtype=np.float32)
        feed = {
            **self.latents(rng),
            "condition": condition[None].astype(np.float32),
            "given": np.asarray([1.0 if given else 0.0], dtype=np.float32),
        }
        return self.generate(feed)

    def keys(self, probs: np.ndarray) -> np.ndarray:
        return keys_down(probs, self.monophonic)


def draw(
    probs: np.ndarray, sampler: Sampler, hold: int = 1, monophonic: bool = False
) -> np.ndarray:
    """Keys down, drawn from their probabilities at the sampler's temperature: once per
    step of the generator, held over its ``hold`` grid steps (a draw per grid step would
    break every held note into fragments); a monophonic track draws one of its keys or a
    rest per step, others each key on its own."""
    t = sampler.sampling.temperature
    if t <= 0:
        return keys_down(probs, monophonic)
    cells = probs[..., ::hold, :].astype(np.float64)
    if monophonic:
        rest = np.clip(1.0 - cells.sum(axis=-1, keepdims=True), 0.0, 1.0)
        p = np.concatenate((cells, rest), axis=-1) ** (1.0 / t) + 1e-12
        p /= p.sum(axis=-1, keepdims=True)
        u = sampler.rng.random((*p.shape[:-1], 1))
        choice = np.minimum((p.cumsum(axis=-1) < u).sum(axis=-1), p.shape[-1] - 1)
        keys = np.arange(p.shape[-1]) == choice[..., None]
        keys = keys[..., :-1]  # the last choice is the rest
    else:
        p = np.clip(cells, 1e-6, 1 - 1e-6)
        logits = np.log(p) - np.log1p(-p)
        keys = sampler.rng.random(p.shape) < 1.0 / (1.0 + np.exp(-logits / t))
    return np.repeat(keys, hold, axis=-2)


@dataclass(frozen=True)
class MuseGANState:
    notes: tuple[HeardNote, ...] = ()
    velocities: tuple[int, ...] = ()


class MuseGANVoice:
    def __init__(self, model: ModelFile, *, max_gap_beats: float | None = None) -> None:
        info = model.info
        self.model = model
        self.grid = Grid.from_dict(info.grid)
        cfg = info.config
        self.stepper = MuseGANStepper(model.run, cfg)
        self.given_track = int(cfg.get("accompany_track", 0))
        self.bar = self.stepper.steps  # ticks of a bar (a tick is a step)
        self.length = self.stepper.bars * self.bar
        self.stepper.phrase(np.random.default_rng(0))  # a session's first run is slow

    @property
    def family(self) -> str:
        return self.model.info.family

    def empty(self) -> MuseGANState:
        return MuseGANState()

    def observe(self, state: MuseGANState, ticks: Iterable[TickEvents]) -> MuseGANState:
        ticks = list(ticks)
        if not ticks:
            return state
        velocities = (*state.velocities, *(n.velocity for ev in ticks for n in ev.ons))
        notes = hear(state.notes, ticks, keep=2 * self.length)
        return MuseGANState(notes, velocities[-RECENT_VELOCITIES:])

    def velocity(self, state: MuseGANState) -> int:
        if not state.velocities:
            return DEFAULT_VELOCITY
        return self.grid.velocity(round(sum(state.velocities) / len(state.velocities)))

    def plan(
        self,
        state: MuseGANState,
        ticks: Iterable[TickEvents],
        *,
        start_tick: int,
        until_tick: int,
        sampler: Sampler,
        note_first: bool = True,
    ) -> Iterator[PlanStep]:
        state = self.observe(state, ticks)
        return self._play(state, start_tick, until_tick, sampler, None)

    def accompany(
        self,
        state: MuseGANState,
        ticks: Iterable[TickEvents],
        *,
        start_tick: int,
        until_tick: int,
        sampler: Sampler,
        note_first: bool = True,
    ) -> Iterator[PlanStep]:
        state = self.observe(state, ticks)
        end = (start_tick // self.bar + 1) * self.bar  # the first barline after now
        origin = end - self.length
        # Keys still down are heard as held to the phrase's end; the rest as played.
        line = [(n.start, end if n.end is None else n.end, n.pitch) for n in state.notes]
        c = self.stepper
        condition = roll(line, origin, self.length, c.pitch_lo, c.pitches)
        condition = condition.reshape(c.bars, c.steps, c.pitches)
        return self._play(state, start_tick, min(until_tick, end), sampler, condition, origin)

    def _play(
        self,
        state: MuseGANState,
        start: int,
        until: int,
        sampler: Sampler,
        condition: np.ndarray | None,
        origin: int | None = None,
    ) -> Iterator[PlanStep]:
        """Events of phrases from ``origin`` (default ``start``), played from ``start`` to
        ``until``, tick by tick."""
        c = self.stepper
        velocity = self.velocity(state)
        phrase_at = start if origin is None else origin
        tick = start
        sounding: set[int] = set()
        while tick < until:
            keys = draw(c.phrase(sampler.rng, condition), sampler, c.hold, c.monophonic)
            if condition is not None:
                keys[self.given_track] = False  # the player plays that voice
            merged = keys.any(axis=0).reshape(self.length, c.pitches)  # (steps, pitches)
            for s in range(tick - phrase_at, min(self.length, until - phrase_at)):
                down = {c.pitch_lo + int(k) for k in np.flatnonzero(merged[s])}
                at = phrase_at + s
                events = [Decoded(at, "off", p) for p in sorted(sounding - down)]
                events += [Decoded(at, "on", p, velocity) for p in sorted(down - sounding)]
                sounding = down
                yield PlanStep(events, at + 1)
            tick = phrase_at = phrase_at + self.length
        yield PlanStep([Decoded(until, "off", p) for p in sorted(sounding)], until, tokens=0)
