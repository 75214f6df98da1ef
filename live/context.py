"""The rolling context: what was played, as the model's tokens, extended one event at a time.

The player's events go through the same ``NoteStream`` as files, so the tokens here equal
the offline tokenizer's for the same events (tests/live/test_context.py). Antiphon's own
notes join the same timeline when they are committed, so the model hears the duet, not only
the player. ``last_tick`` is the time of the last token written: every time shift is measured
from it, whoever played last.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable

from antiphon.models.codec import MidiLikeCodec
from antiphon.models.notes import Note, NoteStream, TickEvents

OWN = "antiphon"  # the source of antiphon's own notes in the context


class StreamingContext:
    def __init__(self, codec: MidiLikeCodec, *, max_gap_beats: float | None = None) -> None:
        self.codec = codec
        self.grid = codec.grid
        self.stream = NoteStream(codec.grid)
        self.last_tick = 0
        # A long pause is musically one long pause: cap the written time shift (live only;
        # an offline file is encoded as it is) so ten idle minutes do not fill the window.
        self.max_gap = None if max_gap_beats is None else round(max_gap_beats * codec.grid.tpq)

    # -- the player's events (input thread) --------------------------------------------------
    def note_on(self, beat: float, pitch: int, velocity: int, source: Hashable = 0) -> list[int]:
        out = self.advance(beat)
        self.stream.note_on(beat, pitch, velocity, source)
        return out

    def note_off(self, beat: float, pitch: int, source: Hashable = 0) -> list[int]:
        out = self.advance(beat)
        self.stream.note_off(beat, pitch, source)
        return out

    def pedal(self, beat: float, value: int, source: Hashable = 0) -> list[int]:
        out = self.advance(beat)
        self.stream.pedal(beat, value, source)
        return out

    def all_notes_off(self, beat: float, source: Hashable = 0) -> list[int]:
        out = self.advance(beat)
        self.stream.all_notes_off(beat, source)
        return out

    def advance(self, beat: float) -> list[int]:
        """Tokens for every tick that closed before ``beat``."""
        return self.encode(self.stream.advance(beat))

    def finish(self, beat: float | None = None) -> list[int]:
        return self.encode(self.stream.finish(beat))

    @property
    def holding(self) -> bool:
        """Whether the player (not antiphon's own notes) holds a key or the pedal."""
        return self.stream.holding_except(OWN)

    # -- encoding ------------------------------------------------------------------------
    def encode(self, ticks: Iterable[TickEvents]) -> list[int]:
        out: list[int] = []
        for ev in ticks:
            out.extend(self.codec.encode_tick(ev, self._previous(ev.tick)))
            self.last_tick = ev.tick
        return out

    def shift_to(self, tick: int) -> list[int]:
        """Time-shift tokens from the last token to ``tick`` (a response about to start)."""
        if tick <= self.last_tick:
            return []
        out = self.codec.time_shift(tick - self._previous(tick))
        self.last_tick = tick
        return out

    def _previous(self, tick: int) -> int:
        if self.max_gap is not None and tick - self.last_tick > self.max_gap:
            return tick - self.max_gap
        return self.last_tick

    # -- antiphon's own notes and speculation ----------------------------------------------
    def commit_own(self, tick: int) -> None:
        """Antiphon's tokens up to ``tick`` were written into the model state by the engine."""
        self.last_tick = max(self.last_tick, tick)

    def release_own(self, tick: int, pitches: Iterable[int]) -> list[int]:
        """Note-offs for antiphon's notes cut short at ``tick`` (barge-in), as tokens."""
        offs = [Note(tick, tick, p, 0) for p in pitches]
        return self.encode([TickEvents(tick, offs=offs)]) if offs else []

    def preview(self, beat: float) -> tuple[list[int], int]:
        """The tokens (and last tick) the context would hold at ``beat`` if nothing else is
        played before then; the real context is untouched (speculation works on a copy)."""
        twin = copy.copy(self)
        twin.stream = self.stream.copy()
        tokens = twin.advance(beat)
        return tokens, twin.last_tick
