"""A music21 score as a MIDI file, without music21's MIDI translator.

music21's ``midi.translate`` deep-copies the whole score before it writes a note (its
``expandRepeats`` always copies, repeats or not), and its ABC reader spends half of its
time beaming and setting stem directions: notation that no MIDI file holds. Profiled on
the corpus (cProfile, bach chorales, a Palestrina mass movement, a Monteverdi madrigal):
the translator took two thirds of the conversion, its copy alone 40 %; 82 tunes of an Essen
folk-song book spent 32 of their 57 s of parsing in ``makeBeams``.

``score_to_midi`` writes what the translator writes that a token or a piano roll can see —
every pitched note at its offset with its duration, ties merged by pitch, repeats expanded
(music21's own ``Expander``, copying only the measures it repeats), velocities from the
dynamics as music21 realizes them, the tempo marks — and nothing else (no lyrics, no
programs, no percussion: the tokenizer skips drums). ``parse_for_midi`` is
``music21.corpus.parse`` with the notation-only beaming switched off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

TICKS_PER_QUARTER = 10080  # music21's own resolution, so onsets round as the translator's
_TIE_SLACK = TICKS_PER_QUARTER // 64  # offsets that round apart still join a tie


@contextlib.contextmanager
def _no_beaming() -> Iterator[None]:
    from music21 import stream

    real = stream.Stream.makeBeams

    def skip(self: Any, *args: Any, inPlace: bool = False, **kwargs: Any) -> Any:
        return None if inPlace else self

    stream.Stream.makeBeams = skip  # type: ignore[method-assign]
    try:
        yield
    finally:
        stream.Stream.makeBeams = real  # type: ignore[method-assign]


def parse_for_midi(source: str) -> Any:
    """``music21.corpus.parse(source)`` without beams (which only notation uses) and
    without writing music21's pickle cache (the MIDI files are this source's cache)."""
    from music21 import corpus

    with _no_beaming():
        return corpus.parse(source, forceSource=True)


def score_to_midi(score: Any) -> Any:
    """A ``mido.MidiFile``: a tempo track, then one track per part (channels 1-16 but
    the drums' 10). Raises what music21 raises on a score it cannot expand."""
    import mido
    from music21 import stream

    parts = list(score.parts) if score.hasPartLikeStreams() else [score]
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    tempos: list[tuple[int, float]] = []
    channels = [c for c in range(16) if c != 9]
    for index, part in enumerate(parts):
        if part.getElementsByClass(stream.Measure):
            part = _expanded(part)
        flat = _prepared(part)
        notes = _part_notes(flat)
        if index == 0:
            tempos = _tempos(flat)
        mid.tracks.append(_track(notes, channels[index % len(channels)]))
    mid.tracks.insert(0, _tempo_track(tempos))
    return mid


def _expanded(part: Any) -> Any:
    from music21 import repeat

    expandable = repeat.Expander(part).isExpandable()
    if expandable is None:  # no repeats: the part itself, nothing copied
        return part
    if expandable is False:
        # Repeats music21 cannot follow (the translator gives up on the whole score):
        # the music as written, played once.
        return part
    return part.expandRepeats()


def _prepared(part: Any) -> Any:
    """The part flattened, its velocities realized, as the translator prepares it. Ties
    are merged by ``_part_notes``: music21's ``stripTies`` is quadratic in a part's notes
    (31 s of CPU for one part of Beethoven's op. 18 no. 4, a sixth of the corpus build)."""
    from music21 import volume

    volume.realizeVolume(part)
    return part.flatten()


def _part_notes(flat: Any) -> list[tuple[int, int, int, int]]:
    """(start, end, pitch, velocity) in ticks of every sounding pitched note, tied notes
    merged by pitch (a tie starts on one note and continues on the next of its pitch), as
    ``stripTies(matchByPitch=True)`` merges them: the first note's onset and velocity, the
    last one's end."""
    from music21 import chord, note

    out: list[tuple[int, int, int, int]] = []
    tied: dict[int, int] = {}  # pitch -> index in ``out`` of its note a tie continues

    def add(start: int, end: int, sound: Any, scalar: float) -> None:
        pitch = sound.pitch.midi
        kind = sound.tie.type if sound.tie is not None else None
        held = tied.get(pitch)
        # The next note of a tie's pitch from where the tied note ends continues it,
        # marked or not (Monteverdi's madrigals start ties that no note stops); one that
        # starts inside it is another voice's.
        if held is not None and start >= out[held][1] - _TIE_SLACK:
            first = out[held]
            out[held] = (first[0], max(first[1], end), pitch, first[3])
            if kind not in ("start", "continue"):
                del tied[pitch]
            return
        out.append((start, end, pitch, _velocity(scalar)))
        if kind in ("start", "continue") and held is None:
            tied[pitch] = len(out) - 1

    for n in flat.notes:
        ql = float(n.quarterLength)
        if ql <= 0 or n.duration.isGrace:
            continue  # a grace note has no length of its own in a score
        start = round(float(n.offset) * TICKS_PER_QUARTER)
        end = start + max(1, round(ql * TICKS_PER_QUARTER))
        if isinstance(n, chord.Chord):
            own = n.hasComponentVolumes()
            for c in n.notes:
                if isinstance(c, note.Note):
                    add(start, end, c, (c if own else n).volume.cachedRealized)
        elif isinstance(n, note.Note):
            add(start, end, n, n.volume.cachedRealized)
    return out


def _velocity(scalar: float) -> int:
    return min(127, max(1, round(scalar * 127)))


def _tempos(flat: Any) -> list[tuple[int, float]]:
    from music21 import tempo

    out = []
    for mark in flat.getElementsByClass(tempo.MetronomeMark):
        qpm = mark.getQuarterBPM()
        if qpm:
            out.append((round(float(mark.offset) * TICKS_PER_QUARTER), float(qpm)))
    return out


def _tempo_track(tempos: list[tuple[int, float]]) -> Any:
    import mido

    track = mido.MidiTrack()
    last = 0
    for tick, qpm in sorted(tempos or [(0, 120.0)]):
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(qpm), time=tick - last))
        last = tick
    return track


def _track(notes: list[tuple[int, int, int, int]], channel: int) -> Any:
    import mido

    events = [(s, 1, p, v) for s, _, p, v in notes] + [(e, 0, p, 0) for _, e, p, _ in notes]
    events.sort(key=lambda e: (e[0], e[1]))  # at one tick, note-offs before note-ons
    track = mido.MidiTrack()
    last = 0
    for tick, on, pitch, velocity in events:
        kind = "note_on" if on else "note_off"
        track.append(
            mido.Message(kind, note=pitch, velocity=velocity, channel=channel, time=tick - last)
        )
        last = tick
    return track
