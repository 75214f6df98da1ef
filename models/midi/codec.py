"""MIDILike tokens one event at a time, from the vocabulary an ONNX file carries.

The daemon cannot know a note's duration at its note-on, so its tokens are MIDILike's
note-on / velocity / note-off / time-shift / pedal events. This codec encodes closed ticks of a
``NoteStream`` and decodes generated tokens incrementally, using only the vocabulary (token
strings in id order) and the grid: no miditok import on the daemon's start-up path.
tests/live/test_context.py holds it to miditok's own encoding of the same files.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from antiphon.errors import UserError
from antiphon.models.midi.notes import Grid, TickEvents


@dataclass(frozen=True, slots=True)
class Decoded:
    """One event of a generated sequence, on the grid."""

    tick: int
    kind: str  # "on" | "off" | "pedal"
    pitch: int = 0  # for pedal: 127 down, 0 up (the CC64 value)
    velocity: int = 0


class MidiLikeCodec:
    def __init__(self, vocab: Sequence[str], grid: Grid) -> None:
        self.vocab = list(vocab)
        self.grid = grid
        self.ids = {tok: i for i, tok in enumerate(self.vocab)}
        if not any(t.startswith("NoteOff_") for t in self.vocab):
            raise UserError(
                "the model's tokenizer is not MIDILike (no NoteOff tokens); "
                "the daemon needs a MIDILike model"
            )
        self.bos = self.ids.get("BOS_None")
        self.eos = self.ids.get("EOS_None")
        self.note_on = {p: self.ids[f"NoteOn_{p}"] for p in range(128) if f"NoteOn_{p}" in self.ids}
        self.note_off = {
            p: self.ids[f"NoteOff_{p}"] for p in range(128) if f"NoteOff_{p}" in self.ids
        }
        self.velocity = {
            int(t.split("_")[1]): i for t, i in self.ids.items() if t.startswith("Velocity_")
        }
        self.pedal_on = self.ids.get("Pedal_0")
        self.pedal_off = self.ids.get("PedalOff_0")
        shifts = []
        for tok, i in self.ids.items():
            if tok.startswith("TimeShift_"):
                beat, pos, res = (int(x) for x in tok.split("_")[1].split("."))
                shifts.append((beat * grid.tpq + pos * grid.tpq // res, i))
        shifts.sort()
        self._shift_ticks = [t for t, _ in shifts]
        self._shift_ids = [i for _, i in shifts]
        self.shift_of = dict((i, t) for t, i in shifts)
        # What may follow what: a NoteOn must be followed by its Velocity and only then.
        n = len(self.vocab)
        self.after_note_on = np.zeros(n, dtype=bool)
        self.after_note_on[list(self.velocity.values())] = True
        self.anywhere = np.ones(n, dtype=bool)
        self.anywhere[list(self.velocity.values())] = False
        # Generation never starts or ends a piece mid-stream.
        for special in ("PAD_None", "BOS_None", "EOS_None", "MASK_None"):
            if special in self.ids:
                self.anywhere[self.ids[special]] = False
        self.kind_of = np.zeros(n, dtype=np.int8)  # 1 note-on, 2 velocity, 3 note-off, 4 shift
        self.kind_of[list(self.note_on.values())] = 1
        self.kind_of[list(self.velocity.values())] = 2
        self.kind_of[list(self.note_off.values())] = 3
        self.kind_of[self._shift_ids] = 4

    @property
    def size(self) -> int:
        return len(self.vocab)

    # -- encoding ------------------------------------------------------------------------
    def time_shift(self, ticks: int) -> list[int]:
        """Greedy largest-first decomposition, as miditok writes a time shift."""
        out = []
        while ticks >= self._shift_ticks[0]:
            k = np.searchsorted(self._shift_ticks, ticks, side="right") - 1
            out.append(self._shift_ids[k])
            ticks -= self._shift_ticks[k]
        return out

    def encode_tick(self, ev: TickEvents, previous_tick: int) -> list[int]:
        out = self.time_shift(ev.tick - previous_tick) if ev.tick != previous_tick else []
        if ev.pedal is not None:
            pid = self.pedal_on if ev.pedal else self.pedal_off
            if pid is not None:
                out.append(pid)
        out.extend(self.note_off[n.pitch] for n in ev.offs)
        for n in ev.ons:
            out.append(self.note_on[n.pitch])
            out.append(self.velocity[n.velocity])
        return out

    def encode_ticks(self, ticks: Iterable[TickEvents], previous_tick: int = 0) -> list[int]:
        out: list[int] = []
        for ev in ticks:
            out.extend(self.encode_tick(ev, previous_tick))
            previous_tick = ev.tick
        return out

    def decoder(self, tick: int = 0) -> MidiLikeDecoder:
        return MidiLikeDecoder(self, tick)


class MidiLikeDecoder:
    """Turns generated tokens into timed events as they come (FIFO note-offs, as miditok)."""

    def __init__(self, codec: MidiLikeCodec, tick: int = 0) -> None:
        self.codec = codec
        self.tick = tick
        self._pending_pitch: int | None = None
        self.sounding: dict[int, deque[int]] = {}  # pitch -> onset ticks, oldest first
        self._pitch_of = {i: p for p, i in codec.note_on.items()}
        self._off_pitch = {i: p for p, i in codec.note_off.items()}
        self._vel_of = {i: v for v, i in codec.velocity.items()}

    @property
    def expects_velocity(self) -> bool:
        return self._pending_pitch is not None

    def allowed(self) -> np.ndarray:
        """Tokens that keep the sequence well formed from here."""
        return self.codec.after_note_on if self.expects_velocity else self.codec.anywhere

    def step(self, token: int) -> list[Decoded]:
        c = self.codec
        if token in c.shift_of:
            self.tick += c.shift_of[token]
            self._pending_pitch = None
            return []
        if token in self._pitch_of:
            self._pending_pitch = self._pitch_of[token]
            return []
        if token in self._vel_of:
            pitch, self._pending_pitch = self._pending_pitch, None
            if pitch is None:
                return []
            self.sounding.setdefault(pitch, deque()).append(self.tick)
            return [Decoded(self.tick, "on", pitch, self._vel_of[token])]
        self._pending_pitch = None
        if token in self._off_pitch:
            pitch = self._off_pitch[token]
            if self.sounding.get(pitch):
                self.sounding[pitch].popleft()
                return [Decoded(self.tick, "off", pitch)]
            return []
        if token == c.pedal_on:
            return [Decoded(self.tick, "pedal", 127)]
        if token == c.pedal_off:
            return [Decoded(self.tick, "pedal", 0)]
        return []

    def release(self) -> list[Decoded]:
        """Note-offs for everything still sounding, at the current tick."""
        out = [Decoded(self.tick, "off", p) for p, onsets in self.sounding.items() for _ in onsets]
        self.sounding.clear()
        return out
