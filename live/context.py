"""The rolling context: what was played, as closed ticks on the model's grid.

The player's events and antiphon's own (echoed back as they are sent) go through the same
``NoteStream`` as files do, so a model's view of the live performance is exactly its view of
a file with the same events (tests/live/test_context.py holds the token encoding of a
streamed file to miditok's). What the ticks become — tokens, piano-roll frames, notes — is
the model family's business (``engine.Voice``).
"""

from __future__ import annotations

from collections.abc import Hashable

from antiphon.models.midi.notes import Grid, NoteStream, TickEvents

OWN = "antiphon"  # the source of antiphon's own notes in the context


class StreamingContext:
    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.stream = NoteStream(grid)

    # Each event first closes the ticks before it and returns them.
    def note_on(
        self, beat: float, pitch: int, velocity: int, source: Hashable = 0
    ) -> list[TickEvents]:
        out = self.stream.advance(beat)
        self.stream.note_on(beat, pitch, velocity, source)
        return out

    def note_off(self, beat: float, pitch: int, source: Hashable = 0) -> list[TickEvents]:
        out = self.stream.advance(beat)
        self.stream.note_off(beat, pitch, source)
        return out

    def pedal(self, beat: float, value: int, source: Hashable = 0) -> list[TickEvents]:
        out = self.stream.advance(beat)
        self.stream.pedal(beat, value, source)
        return out

    def all_notes_off(self, beat: float, source: Hashable = 0) -> list[TickEvents]:
        out = self.stream.advance(beat)
        self.stream.all_notes_off(beat, source)
        return out

    def advance(self, beat: float) -> list[TickEvents]:
        return self.stream.advance(beat)

    def finish(self, beat: float | None = None) -> list[TickEvents]:
        return self.stream.finish(beat)

    @property
    def holding(self) -> bool:
        """Whether the player (not antiphon's own notes) holds a key or the pedal."""
        return self.stream.holding_except(OWN)

    def preview(self, beat: float) -> list[TickEvents]:
        """The ticks that would close by ``beat`` if nothing else is played before then;
        the real context is untouched (speculation works on a copy)."""
        return self.stream.copy().advance(beat)
