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
from antiphon.models.midi.codec import Decoded, MidiLikeCodec
from antiphon.models.midi.notes import Grid, TickEvents

MAX_TOKENS_PER_TICK = 64  # no piano plays more on one tick; a model that does is stuck


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


class TokenVoice:
    """Miditok MIDILike tokens in, next-token logits out, any declared state (KV cache,
    recurrent state, convolution buffers)."""

    def __init__(self, model: ModelFile, *, max_gap_beats: float | None = None) -> None:
        info = model.info
        self.model = model
        self.grid = Grid.from_dict(info.grid)
        self.codec = MidiLikeCodec(info.vocab, self.grid)
        self.stepper = model.stepper()
        # A long pause is musically one long pause: the daemon caps the time shift it
        # writes (an offline file is encoded as it is) so idle minutes do not fill the window.
        self.max_gap = None if max_gap_beats is None else round(max_gap_beats * self.grid.tpq)
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
        tokens, last = self.encode(state.last_tick, ticks)
        return TokenState(self.stepper.feed(state.model, tokens), last) if tokens else state

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
        tokens, last = self.encode(state.last_tick, ticks)
        start = max(start_tick, last)
        if start > last:
            tokens += self.codec.time_shift(start - self._previous(last, start))
        model = self.stepper.feed(state.model, tokens)
        return self._generate(model, sampler, start, until_tick, note_first)

    def _generate(
        self, state: State, sampler: Sampler, start: int, until: int, note_first: bool
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
            token = sampler(state.last_logits, allowed)
            tick = dec.tick
            events = dec.step(token)
            stuck = 0 if dec.tick != tick else stuck + 1
            started = started or any(e.kind == "on" for e in events)
            state = self.stepper.feed(state, [token])
            yield PlanStep(events, dec.tick)
        yield PlanStep(dec.release(), dec.tick, tokens=0)
