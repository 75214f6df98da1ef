"""The engine: an ONNX token model, its codec and a sampler, generating timed events.

``Engine.generate`` is a generator so that callers stream: the daemon schedules each note as
soon as its tokens exist (and can stop mid-response on barge-in), ``antiphon continue``
simply drains it. Every sampled token is fed back, so the returned state always matches what
was generated — a response that is cut short is rolled back by keeping an older state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from antiphon.errors import UserError
from antiphon.live.sampling import Sampler
from antiphon.live.session import ModelFile
from antiphon.live.stepper import State, TokenStepper
from antiphon.models.codec import Decoded, MidiLikeCodec, MidiLikeDecoder
from antiphon.models.notes import Grid


@dataclass
class Step:
    token: int
    events: list[Decoded]
    state: State  # the model state after feeding ``token``
    tick: int  # decoder time after ``token``


@dataclass
class Generation:
    tokens: list[int] = field(default_factory=list)
    events: list[Decoded] = field(default_factory=list)
    state: State | None = None
    end_tick: int = 0


class Engine:
    def __init__(self, model: ModelFile) -> None:
        info = model.info
        if info.representation != "tokens":
            raise UserError(
                f"{model.path}: representation {info.representation!r} is not supported"
            )
        self.model = model
        self.grid = Grid.from_dict(info.grid)
        self.codec = MidiLikeCodec(info.vocab, self.grid)
        self.stepper = TokenStepper(model.run, info.signature, info.max_context)
        self.max_context = info.max_context
        self._starts_note = np.zeros(self.codec.size, dtype=bool)
        self._starts_note[list(self.codec.note_on.values())] = True
        if self.codec.pedal_on is not None:
            self._starts_note[self.codec.pedal_on] = True

    @property
    def family(self) -> str:
        return self.model.info.family

    def empty(self) -> State:
        return self.stepper.empty()

    def prime(self, tokens: Sequence[int], state: State | None = None) -> State:
        return self.stepper.feed(state or self.stepper.empty(), list(tokens))

    def generate(
        self,
        state: State,
        sampler: Sampler,
        *,
        start_tick: int,
        until_tick: int,
        max_tokens: int = 100_000,
        note_first: bool = False,
        decoder: MidiLikeDecoder | None = None,
    ) -> Iterator[Step]:
        """Sample tokens until the decoded time reaches ``until_tick``.

        ``note_first`` forbids time shifts and note-offs before the first note, so a response
        starts at once instead of after a silence the model might choose.
        """
        if state.last_logits is None:
            raise ValueError("prime the engine with at least one token before generating")
        dec = decoder or self.codec.decoder(start_tick)
        started = not note_first
        for _ in range(max_tokens):
            if dec.tick >= until_tick and not dec.expects_velocity:
                return
            allowed = dec.allowed()
            if not started:
                allowed = allowed & self._starts_note if not dec.expects_velocity else allowed
            token = sampler(state.last_logits, allowed)
            events = dec.step(token)
            started = started or any(e.kind == "on" for e in events)
            state = self.stepper.feed(state, [token])
            yield Step(token, events, state, dec.tick)

    def run(self, state: State, sampler: Sampler, **kwargs) -> Generation:  # type: ignore[no-untyped-def]
        gen = Generation(state=state, end_tick=kwargs.get("start_tick", 0))
        for step in self.generate(state, sampler, **kwargs):
            gen.tokens.append(step.token)
            gen.events.extend(step.events)
            gen.state, gen.end_tick = step.state, step.tick
        return gen
