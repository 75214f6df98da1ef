from __future__ import annotations

from antiphon.live.policy import PhrasePolicy, PolicyConfig


def test_a_phrase_ends_after_the_silence_and_the_answer_matches_its_length() -> None:
    p = PhrasePolicy(PolicyConfig(silence=0.5, min_response=2, max_response=12))
    assert p.phrase_end() is None
    p.on_note_on(10.0)
    p.on_note_on(10.5)
    p.on_release(11.0, holding=True)  # one key still down
    assert p.phrase_end() is None
    p.on_release(14.0, holding=False)
    assert p.phrase_end() == 14.5
    assert p.response_seconds(14.5) == 4.0  # the call lasted 10.0 -> 14.0


def test_the_answer_is_clamped() -> None:
    p = PhrasePolicy(PolicyConfig(silence=0.5, min_response=2, max_response=3))
    p.on_note_on(0.0)
    p.on_release(0.1, holding=False)
    assert p.response_seconds(0.6) == 2
    p.on_note_on(1.0)  # after the phrase ended: a new phrase starts here
    assert p.phrase_start == 1.0
    p.on_release(20.0, holding=False)
    assert p.response_seconds(20.5) == 3


def test_playing_on_or_holding_the_pedal_keeps_the_phrase_open() -> None:
    p = PhrasePolicy(PolicyConfig(silence=0.5))
    p.on_note_on(0.0)
    p.on_release(1.0, holding=False)
    p.on_note_on(1.2)  # within the silence: same phrase
    assert p.phrase_start == 0.0 and p.phrase_end() is None
    p.on_release(2.0, holding=False)
    p.on_hold(2.1)  # pedal down
    assert p.phrase_end() is None
    p.on_release(3.0, holding=False)
    assert p.phrase_end() == 3.5
