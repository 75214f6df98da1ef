"""The MIDILike decoder keeps generated tokens in the corpus's canonical form."""

from __future__ import annotations

import pytest

from antiphon.models.midi.codec import MidiLikeCodec
from antiphon.models.midi.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def codec() -> MidiLikeCodec:
    return Tokenizer.create().codec()


def play(codec: MidiLikeCodec, dec, *tokens: str) -> list[tuple[int, str, int]]:
    out = []
    for name in tokens:
        out += [(e.tick, e.kind, e.pitch) for e in dec.step(codec.ids[name])]
    return out


def test_a_restrike_ends_the_sounding_note_and_the_next_note_off_ends_the_new_one(codec) -> None:
    dec = codec.decoder()
    events = play(
        codec, dec, "NoteOn_60", "Velocity_63", "TimeShift_1.0.8",  # 60 sounds from 0
        "NoteOn_60", "Velocity_63", "TimeShift_1.0.8",  # struck again at 8: no NoteOff between
        "NoteOff_60",  # ends the note struck at 8, not the one struck at 0
    )  # fmt: skip
    assert events == [(0, "on", 60), (8, "off", 60), (8, "on", 60), (16, "off", 60)]
    assert not dec.sounding and dec.release() == []


def test_a_note_off_is_offered_only_for_a_sounding_pitch(codec) -> None:
    dec = codec.decoder()
    off = codec.note_off
    assert not dec.allowed()[list(off.values())].any()  # nothing sounds: no NoteOff at all
    play(codec, dec, "NoteOn_60", "Velocity_63", "NoteOn_64", "Velocity_63")
    allowed = dec.allowed()
    assert {p for p, i in off.items() if allowed[i]} == {60, 64}
    play(codec, dec, "TimeShift_0.4.8", "NoteOff_60")
    assert {p for p, i in off.items() if dec.allowed()[i]} == {64}
    assert codec.anywhere[off[60]]  # the codec's own mask is untouched
    assert [(e.tick, e.kind, e.pitch) for e in dec.release()] == [(4, "off", 64)]
    assert not dec.allowed()[list(off.values())].any()


def test_a_note_off_of_a_silent_pitch_decodes_to_nothing(codec) -> None:
    dec = codec.decoder()
    assert play(codec, dec, "NoteOff_60", "NoteOn_62", "Velocity_63") == [(0, "on", 62)]
