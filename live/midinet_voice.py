"""MidiNet's voice: each bar answers the bar before it.

Hearing keeps the notes of the last ``HEARD_BARS`` bars (a held key stays open until its
note-off). Playing, from the first sixteenth step at or after ``start_tick``:

- the **previous-bar condition** of the first bar is the player's last bar — the 16 steps
  before the answer starts, its skyline melody (``models.midi.bars``: the notes the player
  is holding are read as ending there); every later bar is conditioned on the bar generated
  before it, as MidiNet chains bars;
- the **chord** of each bar is detected from what was played: the player's last bar's chord
  for the answer's first bar, then the chords of the player's last bars in their order, round
  again (the phrase's harmony comes back under the answer); a bar with no clear triad, or a
  bare melody, gives "no chord";
- a **fresh latent per bar**: noise drawn from the sampler's generator (a fixed ``--seed``
  gives the same bars), so every bar is new even when the conditions repeat.

Each step's key or rest is drawn from the graph's logits with the sampler (temperature,
top-p; temperature 0 is the argmax); a key held over consecutive steps is one note, and the
bar's notes end at its bar line. With ``note_first`` the answer's first step is never a
rest. In ``respond`` the daemon asks for a phrase of bars, in ``accompany`` it plans a short
horizon again as the player plays, so each bar answers the one just played. No torch here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from antiphon.live.engine import PlanStep
from antiphon.live.sampling import Sampler
from antiphon.live.session import ModelFile
from antiphon.models.midi.bars import (
    STEPS,
    NoteSpan,
    bar_of_notes,
    chord_of_code,
    chord_vector,
    fold,
    melody_notes,
    melody_roll,
)
from antiphon.models.midi.codec import Decoded
from antiphon.models.midi.notes import Grid, TickEvents

HEARD_BARS = 4  # bars of the player's material kept for conditions and chords
RECENT_NOTES = 16  # the answer's velocity: the mean of this many notes heard last
DEFAULT_VELOCITY = 80


@dataclass(frozen=True)
class BarState:
    closed: tuple[NoteSpan, ...] = ()  # notes heard to their end, oldest first
    held: tuple[tuple[int, int, int], ...] = ()  # (start, pitch, velocity) of keys down
    velocities: tuple[int, ...] = ()
    last_tick: int = 0


class MidiNetVoice:
    def __init__(self, model: ModelFile, *, max_gap_beats: float | None = None) -> None:
        info = model.info
        self.model = model
        self.grid = Grid.from_dict(info.grid)
        cfg = info.config
        self.n_keys, self.pitch_lo = int(cfg["n_keys"]), int(cfg["pitch_lo"])
        self.noise = int(cfg["noise"])
        self.step_ticks = max(1, self.grid.tpq // 4)
        self.bar_ticks = STEPS * self.step_ticks
        self.keys_only = np.ones(self.n_keys + 1, dtype=bool)
        self.keys_only[-1] = False
        silence = melody_roll([-1] * STEPS, self.pitch_lo, self.n_keys)[None]
        self._bar(np.zeros((1, self.noise), np.float32), silence, chord_vector(None)[None])

    @property
    def family(self) -> str:
        return self.model.info.family

    def empty(self) -> BarState:
        return BarState()

    def observe(self, state: BarState, ticks: Iterable[TickEvents]) -> BarState:
        closed, held = list(state.closed), {(s, p): v for s, p, v in state.held}
        velocities, last = list(state.velocities), state.last_tick
        for ev in ticks:
            for n in ev.offs:
                if held.pop((n.start, n.pitch), None) is not None:
                    closed.append((n.start, ev.tick, n.pitch))
            for n in ev.ons:
                held[(ev.tick, n.pitch)] = n.velocity
                velocities.append(n.velocity)
            last = max(last, ev.tick)
        horizon = last - HEARD_BARS * self.bar_ticks
        closed = [n for n in closed if n[1] > horizon]
        return BarState(
            tuple(closed),
            tuple((s, p, v) for (s, p), v in held.items()),
            tuple(velocities[-RECENT_NOTES:]),
            last,
        )

    def velocity(self, state: BarState) -> int:
        if not state.velocities:
            return DEFAULT_VELOCITY
        return self.grid.velocity(round(float(np.mean(state.velocities))))

    def conditions(self, state: BarState, start: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """(the player's last bar as a roll (16, W), the chords of the answer's bars in order,
        at least one) for an answer starting at tick ``start``."""
        notes = [*state.closed, *((s, max(start, s + 1), p) for s, p, _ in state.held)]
        melody, _ = bar_of_notes(notes, start - self.bar_ticks, self.step_ticks)
        prev = melody_roll(melody, self.pitch_lo, self.n_keys)
        codes = []
        for k in range(HEARD_BARS, 0, -1):  # the player's bars, oldest first
            a = start - k * self.bar_ticks
            here = [n for n in notes if n[0] < a + self.bar_ticks and n[1] > a]
            if here:
                codes.append(bar_of_notes(here, a, self.step_ticks)[1])
        if not codes:
            codes = [-1]
        chords = [codes[-1], *codes[:-1]] if len(codes) > 1 else codes
        return prev, [chord_vector(chord_of_code(c)) for c in chords]

    def _bar(self, noise: np.ndarray, prev: np.ndarray, chord: np.ndarray) -> np.ndarray:
        out = self.model.run({"noise": noise, "prev_bar": prev, "chord": chord})
        return out["logits"][0]  # (16, W)

    def plan(
        self,
        state: BarState,
        ticks: Iterable[TickEvents],
        *,
        start_tick: int,
        until_tick: int,
        sampler: Sampler,
        note_first: bool = True,
    ) -> Iterator[PlanStep]:
        state = self.observe(state, ticks)
        start = -(-start_tick // self.step_ticks) * self.step_ticks
        prev, chords = self.conditions(state, start)
        return self._generate(prev, chords, start, until_tick, sampler, note_first, state)

    def _generate(
        self,
        prev: np.ndarray,
        chords: list[np.ndarray],
        start: int,
        until: int,
        sampler: Sampler,
        note_first: bool,
        state: BarState,
    ) -> Iterator[PlanStep]:
        velocity = self.velocity(state)
        bar = 0
        t = start
        while t < until:
            noise = sampler.rng.standard_normal((1, self.noise)).astype(np.float32)
            chord = chords[bar % len(chords)][None]
            logits = self._bar(noise, prev[None], chord)
            choice = np.empty(STEPS, dtype=np.int64)
            for s in range(STEPS):
                first = note_first and bar == 0 and s == 0
                choice[s] = sampler(logits[s], self.keys_only if first else None)
            melody = [-1 if c == self.n_keys else self.pitch_lo + int(c) for c in choice]
            events = []
            for a, b, p in melody_notes(melody, t, self.step_ticks):
                if a >= until:
                    break
                p = fold(p, self.grid.pitch_lo, self.grid.pitch_hi - self.grid.pitch_lo + 1)
                events += [Decoded(a, "on", p, velocity), Decoded(min(b, until), "off", p)]
            events.sort(key=lambda e: (e.tick, e.kind == "on"))
            prev = np.zeros_like(prev)
            prev[np.arange(STEPS), choice] = 1.0
            t += self.bar_ticks
            bar += 1
            yield PlanStep(events, min(t, until))
        yield PlanStep([], until, tokens=0)
