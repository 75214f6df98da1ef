"""C-RNN-GAN's voice: the generator's state warmed on the player's last notes, then free.

Hearing is the note RNN's (``notes_voice``: a note is read once it has ended and nothing can
still come before it). Each note heard is fed to the generator as the ``prev`` input of one
step, (step, length, pitch, velocity) in model units — teacher forcing, as in the paper's
pre-training — so the LSTM state carries the phrase. The last note read is kept back as the
next step's ``prev``: the step that takes it is the first of the answer, and its output is
the answer's first note. The noise of the listening steps comes from a generator seeded by
the count of notes read (a state is a value: hearing the same notes gives the same state);
the noise of the answer's steps from the sampler, times the temperature (0: no noise at all,
the generator's most central answer), so ``--seed`` reproduces an answer.

Playing runs free: each output note is rounded to the grid (times clamped to 0..max_beats,
the pitch to a key of the grid's range, the velocity to its bins), played, and fed back as
placed (``placed_features``). With ``note_first`` the answer's first note starts at once.
At most ``MAX_CHORD`` notes share a tick. No torch here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from antiphon.live.engine import PlanStep
from antiphon.live.notes_voice import MAX_CHORD, HeardNote, NoteState, NoteVoice
from antiphon.live.sampling import Sampler
from antiphon.live.session import ModelFile
from antiphon.models.midi.codec import Decoded
from antiphon.models.midi.notes import Grid, TickEvents


def scaled(step: float, length: float, pitch: float, velocity: float, c: dict) -> np.ndarray:
    """Beats and MIDI units -> the model's four features (``CRNNGANConfig.scale``)."""
    top = float(c["max_beats"])
    return np.asarray(
        [
            min(max(step, 0.0), top),
            min(max(length, 0.0), top),
            (pitch - float(c["pitch_center"])) / float(c["pitch_scale"]),
            velocity / float(c["velocity_scale"]),
        ],
        dtype=np.float32,
    )


def placed_features(
    out: np.ndarray, c: dict, tpq: int, lo: int = 0, hi: int = 127
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """A generated note rounded as it is played: ((step ticks, length ticks, pitch,
    velocity), its features in model units, to feed back)."""
    top = float(c["max_beats"])
    step = round(min(max(float(out[0]), 0.0), top) * tpq)
    length = max(1, round(min(max(float(out[1]), 0.0), top) * tpq))
    pitch = round(float(out[2]) * float(c["pitch_scale"]) + float(c["pitch_center"]))
    pitch = min(hi, max(lo, pitch))
    velocity = min(127, max(1, round(float(out[3]) * float(c["velocity_scale"]))))
    row = scaled(step / tpq, length / tpq, pitch, velocity, c)
    return (step, length, pitch, velocity), row


def _listening_noise(count: int, n: int, size: int) -> np.ndarray:
    return np.random.default_rng(count).standard_normal((1, n, size)).astype(np.float32)


class CRNNGANVoice(NoteVoice):
    """``NoteState.prediction`` holds the last note read, not yet fed (the next ``prev``)."""

    def __init__(self, model: ModelFile, *, max_gap_beats: float | None = None) -> None:
        info = model.info
        self.model = model
        self.grid = Grid.from_dict(info.grid)
        self.config = info.config
        self.noise = int(self.config["noise"])
        self.max_beats = float(self.config["max_beats"])
        tpq = self.grid.tpq
        self.max_ticks = round(self.max_beats * tpq)
        gap = self.max_beats if max_gap_beats is None else min(max_gap_beats, self.max_beats)
        self.max_gap = round(gap * tpq)
        self.pairs = info.signature.state
        self._run(self.empty().arrays, np.zeros((1, 1, 4), np.float32), 0)  # warms the session

    def _run(
        self, arrays: dict[str, np.ndarray], prev: np.ndarray, count: int, noise=None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if noise is None:
            noise = _listening_noise(count, prev.shape[1], self.noise)
        out = self.model.run({"noise": noise, "prev": prev, **arrays})
        return {p.input: out[p.output] for p in self.pairs}, out["notes"][0, -1]

    def _read(self, state: NoteState, notes: Sequence[HeardNote]) -> NoteState:
        if not notes:
            return state
        tpq, last = self.grid.tpq, state.last_start
        rows = []
        for n in notes:
            step = 0 if last is None else min(n.start - last, self.max_gap)
            length = min((n.end or n.start + 1) - n.start, self.max_ticks)
            rows.append(scaled(step / tpq, length / tpq, n.pitch, n.velocity, self.config))
            last = n.start
        pending = state.prediction
        feed = ([pending] if pending is not None else []) + rows[:-1]
        arrays = state.arrays
        if feed:
            arrays, _ = self._run(arrays, np.stack(feed)[None], state.notes)
        velocities = (*state.velocities, *(n.velocity for n in notes))[-16:]
        return replace(
            state,
            arrays=arrays,
            prediction=rows[-1],  # type: ignore[arg-type]
            last_start=last,
            velocities=velocities,
            notes=state.notes + len(notes),
        )

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
        return self._generate(state, sampler, start_tick, until_tick, note_first)

    def _generate(
        self, state: NoteState, sampler: Sampler, start: int, until: int, note_first: bool
    ) -> Iterator[PlanStep]:
        tpq, g = self.grid.tpq, self.grid
        arrays, last = state.arrays, state.last_start
        prev = state.prediction if state.prediction is not None else np.zeros(4, np.float32)
        t = sampler.sampling.temperature
        sounding: list[tuple[int, int]] = []  # heap of (end, pitch)
        chord, first = 0, True
        while True:
            noise = sampler.rng.standard_normal((1, 1, self.noise)).astype(np.float32) * t
            arrays, out = self._run(arrays, np.asarray(prev)[None, None], 0, noise)
            (step, length, pitch, velocity), _ = placed_features(
                out, self.config, tpq, g.pitch_lo, g.pitch_hi
            )
            onset = start if last is None or (first and note_first) else last + step
            onset = max(onset, start)
            if onset == last and chord >= MAX_CHORD:
                onset += 1
            if onset >= until:
                break
            chord = chord + 1 if onset == last else 1
            events = []
            while sounding and sounding[0][0] <= onset:
                end, p = heapq.heappop(sounding)
                events.append(Decoded(end, "off", p))
            if any(p == pitch for _, p in sounding):  # struck again: it ends here
                sounding = [n for n in sounding if n[1] != pitch]
                heapq.heapify(sounding)
                events.append(Decoded(onset, "off", pitch))
            events.append(Decoded(onset, "on", pitch, g.velocity(velocity)))
            heapq.heappush(sounding, (onset + length, pitch))
            gap = 0 if last is None else min(onset - last, self.max_gap)
            prev = scaled(gap / tpq, length / tpq, pitch, velocity, self.config)
            last, first = onset, False
            yield PlanStep(events, onset)
        release = [Decoded(min(end, until), "off", p) for end, p in sorted(sounding)]
        yield PlanStep(release, until, tokens=0)
