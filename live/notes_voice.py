"""The note RNN's voice: hears the performance as notes and answers with a melody.

The model reads notes, (pitch, step, duration) in beats, in (start, pitch) order; the
daemon hears ticks, where a note-on comes long before its note-off. ``observe`` therefore
keeps heard notes in a small buffer and reads a note once it has ended and every note that
started before it has ended too: that is when its duration is known and nothing can still
come before it. The cost is latency in what the model knows, not in what it plays: while a
key is held, the notes played over it wait in the buffer (at most ``MAX_PENDING``; beyond
that the held note is read as ending where the next one starts). ``plan`` reads keys still
held as ending where the answer starts, so an answer always follows everything heard.

``plan`` samples the pitch with the sampler's temperature and top-p (within the grid's
pitch range); step and duration come from the regression heads, clamped to >= 0 and
rounded to the grid. Each note is read back by the model as it was placed. Events come in
time order; every note is closed by ``until_tick``. The velocity is the mean of the last
notes heard. No torch here: onnxruntime runs the graph of ``export.notes_graph``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from antiphon.live.engine import PlanStep
from antiphon.live.sampling import Sampler
from antiphon.live.session import ModelFile
from antiphon.models.midi.codec import Decoded
from antiphon.models.midi.notes import Grid, TickEvents

RECENT_VELOCITIES = 16  # the answer's velocity: the mean of this many notes heard last
DEFAULT_VELOCITY = 64
MAX_PENDING = 64  # notes waiting behind a held key before it is read as ended
MAX_CHORD = 4  # most generated notes on one tick: a model stuck at step 0 still moves on
# With nothing heard, the model hears one neutral note first (the tutorial always starts
# from a seed sequence): middle C lasting a beat. It is not played.
PRIMER = (60, 0.0, 1.0)


def quantize(beats: float, max_beats: float, tpq: int) -> int:
    """A regression head's output as ticks: clamped to 0..max_beats, rounded to the grid."""
    return round(min(max(beats, 0.0), max_beats) * tpq)


@dataclass(frozen=True, slots=True)
class HeardNote:
    start: int  # ticks
    pitch: int
    velocity: int
    end: int | None = None  # None while the key is down


@dataclass(frozen=True)
class NoteState:
    arrays: dict[str, np.ndarray]  # the LSTM state, by graph input name
    # (pitch logits, step, duration) predicted for the next note; None before any note
    prediction: tuple[np.ndarray, float, float] | None = None
    last_start: int | None = None  # start tick of the last note read
    pending: tuple[HeardNote, ...] = ()  # heard, not read yet, in (start, pitch) order
    velocities: tuple[int, ...] = ()  # of the last notes heard
    notes: int = 0  # notes read


class NoteVoice:
    """(pitch, step, duration) in, next note's pitch logits, step and duration out."""

    def __init__(self, model: ModelFile, *, max_gap_beats: float | None = None) -> None:
        info = model.info
        self.model = model
        self.grid = Grid.from_dict(info.grid)
        self.pitches = int(info.config.get("pitches", 128))
        self.max_beats = float(info.config.get("max_beats", 8.0))
        tpq = self.grid.tpq
        self.max_ticks = round(self.max_beats * tpq)
        # A long pause is one long pause: the daemon caps it, and the model never saw more.
        gap = self.max_beats if max_gap_beats is None else min(max_gap_beats, self.max_beats)
        self.max_gap = round(gap * tpq)
        self.pairs = info.signature.state
        self.allowed = np.zeros(self.pitches, dtype=bool)
        self.allowed[self.grid.pitch_lo : self.grid.pitch_hi + 1] = True
        self._run_notes(self.empty().arrays, [PRIMER])  # a session's first run is slow

    @property
    def family(self) -> str:
        return self.model.info.family

    def empty(self) -> NoteState:
        arrays = {
            p.input: np.zeros([1 if d == "batch" else d for d in p.shape], dtype=np.float32)
            for p in self.pairs
        }
        return NoteState(arrays)

    # -- hearing ---------------------------------------------------------------------------
    def observe(self, state: NoteState, ticks: Iterable[TickEvents]) -> NoteState:
        pending = list(state.pending)
        where = {(n.start, n.pitch): i for i, n in enumerate(pending)}
        heard = False
        for ev in ticks:
            for n in ev.offs:  # notes that began before this voice listened are not known
                i = where.get((n.start, n.pitch))
                if i is not None and pending[i].end is None:
                    pending[i] = replace(pending[i], end=ev.tick)
                    heard = True
            for n in ev.ons:
                where[(ev.tick, n.pitch)] = len(pending)
                pending.append(HeardNote(ev.tick, n.pitch, n.velocity))
                heard = True
        if not heard:
            return state
        ready = 0
        while ready < len(pending):
            n = pending[ready]
            if n.end is None:
                if len(pending) - ready <= MAX_PENDING:
                    break
                # A key held for long: read it as ending where the next note starts.
                pending[ready] = replace(n, end=max(pending[ready + 1].start, n.start + 1))
            ready += 1
        return self._read(replace(state, pending=tuple(pending[ready:])), pending[:ready])

    def _read(self, state: NoteState, notes: Sequence[HeardNote]) -> NoteState:
        """The state after the model has read ``notes`` (ended, in (start, pitch) order)."""
        if not notes:
            return state
        tpq, last = self.grid.tpq, state.last_start
        rows = []
        for n in notes:
            step = 0 if last is None else min(n.start - last, self.max_gap)
            duration = min((n.end or n.start + 1) - n.start, self.max_ticks)
            rows.append((n.pitch, step / tpq, duration / tpq))
            last = n.start
        arrays, prediction = self._run_notes(state.arrays, rows)
        velocities = (*state.velocities, *(n.velocity for n in notes))[-RECENT_VELOCITIES:]
        return replace(
            state,
            arrays=arrays,
            prediction=prediction,
            last_start=last,
            velocities=velocities,
            notes=state.notes + len(notes),
        )

    def _run_notes(
        self, arrays: dict[str, np.ndarray], rows: Sequence[tuple[int, float, float]]
    ) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, float, float]]:
        """One graph run over notes (pitch, step beats, duration beats)."""
        feed = {
            "pitch": np.asarray([[r[0] for r in rows]], dtype=np.int64),
            "step": np.asarray([[r[1] for r in rows]], dtype=np.float32),
            "duration": np.asarray([[r[2] for r in rows]], dtype=np.float32),
            **arrays,
        }
        out = self.model.run(feed)
        new = {p.input: out[p.output] for p in self.pairs}
        prediction = (
            out["pitch_logits"][0, -1],
            float(out["next_step"][0, -1]),
            float(out["next_duration"][0, -1]),
        )
        return new, prediction

    # -- playing ---------------------------------------------------------------------------
    def plan(
        self,
        state: NoteState,
        ticks: Iterable[TickEvents],
        *,
        start_tick: int,
        until_tick: int,
        sampler: Sampler,
        note_first: bool = True,
    ) -> Iterator[PlanStep]:
        state = self.observe(state, ticks)
        held = [
            replace(n, end=max(start_tick, n.start + 1)) if n.end is None else n
            for n in state.pending
        ]
        state = self._read(replace(state, pending=()), held)
        if state.prediction is None:
            arrays, prediction = self._run_notes(state.arrays, [PRIMER])
            state = replace(state, arrays=arrays, prediction=prediction)
        return self._generate(state, sampler, start_tick, until_tick, note_first)

    def velocity(self, state: NoteState) -> int:
        if not state.velocities:
            return self.grid.velocity(DEFAULT_VELOCITY)
        return self.grid.velocity(round(sum(state.velocities) / len(state.velocities)))

    def _generate(
        self, state: NoteState, sampler: Sampler, start: int, until: int, note_first: bool
    ) -> Iterator[PlanStep]:
        """Notes until the next would start at ``until``. ``note_first`` puts the first note
        at ``start`` (an answer starts at once, not after a rest the model might choose)."""
        assert state.prediction is not None
        tpq, velocity = self.grid.tpq, self.velocity(state)
        arrays, (logits, step, duration) = state.arrays, state.prediction
        last = state.last_start
        sounding: list[tuple[int, int, int]] = []  # heap of (end, pitch, start)
        chord = 0  # notes generated on the tick of the last one
        first = True
        while True:
            onset = start
            if last is not None and not (first and note_first):
                onset = max(start, last + quantize(step, self.max_beats, tpq))
            if onset == last and chord >= MAX_CHORD:
                onset += 1
            if onset >= until:
                break
            chord = chord + 1 if onset == last else 1
            # One key sounds once per tick: pitches already struck here are not sampled.
            allowed = self.allowed.copy()
            allowed[[p for _, p, s in sounding if s == onset]] = False
            if not allowed.any():
                allowed = self.allowed
            pitch = sampler(logits, allowed)
            length = max(1, quantize(duration, self.max_beats, tpq))
            events = []
            while sounding and sounding[0][0] <= onset:
                end, p, _ = heapq.heappop(sounding)
                events.append(Decoded(end, "off", p))
            if any(p == pitch for _, p, _ in sounding):  # struck again: it ends here
                sounding = [n for n in sounding if n[1] != pitch]
                heapq.heapify(sounding)
                events.append(Decoded(onset, "off", pitch))
            events.append(Decoded(onset, "on", pitch, velocity))
            heapq.heappush(sounding, (onset + length, pitch, onset))
            # The model reads the note as it was placed.
            gap = 0 if last is None else min(max(onset - last, 0), self.max_gap)
            arrays, (logits, step, duration) = self._run_notes(
                arrays, [(pitch, gap / tpq, min(length, self.max_ticks) / tpq)]
            )
            last, first = onset, False
            yield PlanStep(events, onset)
        release = [Decoded(min(end, until), "off", p) for end, p, _ in sorted(sounding)]
        yield PlanStep(release, until, tokens=0)
