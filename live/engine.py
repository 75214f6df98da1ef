"""The engine: a model family's voice — how it hears the context and how it plays.

Every family meets the daemon and ``antiphon continue`` through one small interface:

- ``empty()``: the state before anything was heard;
- ``observe(state, ticks)``: the state after hearing more closed ticks (pure: states are
  values, so a fork or a rollback is just keeping an older one);
- ``plan(state, ticks, start_tick, until_tick, sampler)``: hear ``ticks`` on a fork, then
  generate from ``start_tick`` until ``until_tick``, yielding decoded events as they come
  (a generator, so the daemon schedules notes while later ones are still being sampled and
  can stop on barge-in). Notes still sounding at ``until_tick`` get their note-offs there.

``open_voice`` picks the voice for a model file by its representation; token models
(transformer, token RNNs, TCN) share ``TokenVoice`` because their state is just the
declared state pairs of the graph.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from antiphon.errors import UserError
from antiphon.live.sampling import Sampler
from antiphon.live.session import ModelFile
from antiphon.live.stepper import State
from antiphon.models.midi.codec import Decoded, MidiLikeCodec, MidiLikeDecoder
from antiphon.models.midi.notes import Grid, TickEvents

MAX_TOKENS_PER_TICK = 64  # no piano plays more on one tick; a model that does is stuck
# A note held past its hold has its NoteOff made likelier by HOLD_NATS_PER_BEAT (log odds)
# for every beat beyond. A model that has lost track of a note gives its NoteOff ~0.4 % a
# step (the default model continuing piano music; a note it tracks gets > 99 % at its end),
# so the note rang to the end of the answer. The hold follows the music heard: HOLD_FACTOR
# times the 95th percentile of the lengths of the last HEARD_NOTES notes, within
# HOLD_MIN_BEATS..HOLD_BEATS (HOLD_BEATS until HOLD_MIN_NOTES were heard): music of quavers
# does not hold a note four beats, and even piano music rarely holds one longer (2.8 % of
# the notes of held-out piano-midi.de pieces last over 4 beats, 0.4 % over 8).
HOLD_BEATS = 4.0
HOLD_NATS_PER_BEAT = 2.0
HOLD_FACTOR = 2.0
HOLD_MIN_BEATS = 1.0
HOLD_MIN_NOTES = 16
HEARD_NOTES = 128


@dataclass(frozen=True)
class PlanStep:
    events: list[Decoded]
    tick: int  # the plan's time after this step
    tokens: int = 1  # model steps this took (for stats)


class Voice(Protocol):
    grid: Grid
    model: ModelFile

    def empty(self) -> Any: ...

    def observe(self, state: Any, ticks: Iterable[TickEvents]) -> Any: ...

    def plan(
        self,
        state: Any,
        ticks: Iterable[TickEvents],
        *,
        start_tick: int,
        until_tick: int,
        sampler: Sampler,
        note_first: bool = True,
    ) -> Iterator[PlanStep]: ...


# The voice of a representation; a family whose registry entry names its own voice uses that.
VOICES = {"tokens": "antiphon.live.engine:TokenVoice"}


def open_voice(model: ModelFile, **options: Any) -> Voice:
    from antiphon.models.registry import FAMILIES  # plain data: no torch

    fam = FAMILIES.get(model.info.family)
    spec = (fam.voice if fam is not None else None) or VOICES.get(model.info.representation)
    if spec is None:
        raise UserError(
            f"{model.path}: family {model.info.family!r} ({model.info.representation}) is not "
            "supported by this version of antiphon"
        )
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)(model, **options)


@dataclass(frozen=True)
class TokenState:
    model: State
    last_tick: int = 0  # time of the last token written: time shifts are measured from it
    lengths: tuple[int, ...] = ()  # ticks of the last HEARD_NOTES notes heard to their end


class TokenVoice:
    """Miditok MIDILike tokens in, next-token logits out, any declared state (KV cache,
    recurrent state, convolution buffers)."""

    def __init__(
        self,
        model: ModelFile,
        *,
        max_gap_beats: float | None = None,
        hold_beats: float | None = HOLD_BEATS,
    ) -> None:
        info = model.info
        self.model = model
        self.grid = Grid.from_dict(info.grid)
        self.codec = MidiLikeCodec(info.vocab, self.grid)
        self.stepper = model.stepper()
        # A long pause is musically one long pause: the daemon caps the time shift it
        # writes (an offline file is encoded as it is) so idle minutes do not fill the window.
        self.max_gap = None if max_gap_beats is None else round(max_gap_beats * self.grid.tpq)
        self.hold = None if hold_beats is None else hold_beats * self.grid.tpq  # ticks
        self._starts_note = np.zeros(self.codec.size, dtype=bool)
        self._starts_note[list(self.codec.note_on.values())] = True
        if self.codec.pedal_on is not None:
            self._starts_note[self.codec.pedal_on] = True
        self._shifts = self.codec.kind_of == 4

    @property
    def family(self) -> str:
        return self.model.info.family

    def empty(self) -> TokenState:
        bos = self.codec.bos
        return TokenState(self.stepper.feed(self.stepper.empty(), [bos] if bos is not None else []))

    def warm(self) -> None:
        """The model's longest run once, before it answers anyone (``TokenStepper.warm``)."""
        warm = getattr(self.stepper, "warm", None)  # a seq2seq stepper has no window to fill
        if warm is not None:
            warm()
        self.empty()

    def encode(self, last_tick: int, ticks: Iterable[TickEvents]) -> tuple[list[int], int]:
        out: list[int] = []
        for ev in ticks:
            out += self.codec.encode_tick(ev, self._previous(last_tick, ev.tick))
            last_tick = ev.tick
        return out, last_tick

    def _previous(self, last_tick: int, tick: int) -> int:
        if self.max_gap is not None and tick - last_tick > self.max_gap:
            return tick - self.max_gap
        return last_tick

    def observe(self, state: TokenState, ticks: Iterable[TickEvents]) -> TokenState:
        ticks = list(ticks)
        tokens, last = self.encode(state.last_tick, ticks)
        if not tokens:
            return state
        return TokenState(self.stepper.feed(state.model, tokens), last, heard(state, ticks))

    def hold_for(self, lengths: tuple[int, ...]) -> float | None:
        """Ticks after which a note's NoteOff is made likelier: HOLD_FACTOR times the 95th
        percentile of the note lengths heard, between HOLD_MIN_BEATS and the voice's hold."""
        if self.hold is None or len(lengths) < HOLD_MIN_NOTES:
            return self.hold
        lo = HOLD_MIN_BEATS * self.grid.tpq
        return float(np.clip(HOLD_FACTOR * np.percentile(lengths, 95), lo, max(lo, self.hold)))

    def prime(self, tokens: list[int], state: State | None = None) -> State:
        return self.stepper.feed(state or self.stepper.empty(), tokens)

    def plan(
        self,
        state: TokenState,
        ticks: Iterable[TickEvents],
        *,
        start_tick: int,
        until_tick: int,
        sampler: Sampler,
        note_first: bool = True,
    ) -> Iterator[PlanStep]:
        ticks = list(ticks)
        tokens, last = self.encode(state.last_tick, ticks)
        hold = self.hold_for(heard(state, ticks))
        start = max(start_tick, last)
        if start > last:
            tokens += self.codec.time_shift(start - self._previous(last, start))
        model = self.stepper.feed(state.model, tokens)
        return self._generate(model, sampler, start, until_tick, note_first, hold)

    def _generate(
        self,
        state: State,
        sampler: Sampler,
        start: int,
        until: int,
        note_first: bool,
        hold: float | None = None,
    ) -> Iterator[PlanStep]:
        """Sample until the decoded time reaches ``until``. ``note_first`` forbids time
        shifts and note-offs before the first note, so an answer starts at once instead of
        after a silence the model might choose."""
        if state.last_logits is None:
            raise ValueError("a token voice needs at least one token of context")
        dec = self.codec.decoder(start)
        started = not note_first
        stuck = 0  # tokens since time last moved
        while dec.tick < until or dec.expects_velocity:
            allowed = dec.allowed()
            if not started and not dec.expects_velocity:
                allowed = allowed & self._starts_note
            elif stuck >= MAX_TOKENS_PER_TICK and not dec.expects_velocity:
                # A model that never moves time on (an untrained one can, greedily) would
                # never reach ``until``: make it.
                allowed = allowed & self._shifts
            token = sampler(self._release_overdue(state.last_logits, dec, hold), allowed)
            tick = dec.tick
            events = dec.step(token)
            stuck = 0 if dec.tick != tick else stuck + 1
            started = started or any(e.kind == "on" for e in events)
            state = self.stepper.feed(state, [token])
            yield PlanStep(events, dec.tick)
        # The last time shift may overshoot ``until``: what still sounds ends at ``until``.
        yield PlanStep(dec.release(min(dec.tick, until)), dec.tick, tokens=0)

    def _release_overdue(
        self, logits: np.ndarray, dec: MidiLikeDecoder, hold: float | None
    ) -> np.ndarray:
        """The logits with the NoteOff of every note held past ``hold`` ticks made likelier."""
        if hold is None:
            return logits
        out = logits
        for pitch, onset in dec.sounding.items():
            over = dec.tick - onset - hold
            if over > 0:
                if out is logits:
                    out = np.array(logits, dtype=np.float64)
                out[self.codec.note_off[pitch]] += HOLD_NATS_PER_BEAT * over / self.grid.tpq
        return out


def heard(state: TokenState, ticks: list[TickEvents]) -> tuple[int, ...]:
    """The lengths of the last HEARD_NOTES notes heard, after ``ticks``."""
    ended = [n.end - n.start for ev in ticks for n in ev.offs if n.end is not None]
    return (state.lengths + tuple(ended))[-HEARD_NOTES:] if ended else state.lengths
