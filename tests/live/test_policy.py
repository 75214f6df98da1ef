"""The phrase rule (live/policy.py) with a fake clock: times are plain numbers."""

from __future__ import annotations

import pytest

from antiphon.live.material import release_time
from antiphon.live.messages import ALL_NOTES_OFF, parse
from antiphon.live.policy import CHORD_WINDOW, PhrasePolicy, PolicyConfig


def test_a_phrase_ends_after_the_silence_and_the_answer_matches_its_length() -> None:
    p = PhrasePolicy(PolicyConfig(silence=0.5, min_response=2, max_response=12))
    assert p.phrase_end() is None
    p.on_note_on(10.0, 0, 60)
    p.on_note_on(10.05, 0, 64)  # a chord
    p.on_note_off(11.0, 0, 60)
    assert p.phrase_end() is None  # one key still down
    p.on_note_off(14.0, 0, 64)
    assert p.phrase_end() == 14.5
    assert p.response_seconds(14.5) == 4.0  # the call lasted 10.0 -> 14.0


def test_the_answer_is_clamped() -> None:
    p = PhrasePolicy(PolicyConfig(silence=0.5, min_response=2, max_response=3))
    p.on_note_on(0.0)
    p.on_note_off(0.1)
    assert p.response_seconds(0.6) == 2
    p.on_note_on(1.0)  # after the phrase ended: a new phrase starts here
    assert p.phrase_start == 1.0
    p.on_note_off(20.0)
    assert p.response_seconds(20.5) == 3


def test_playing_on_or_a_pedal_pressed_after_the_last_chord_keeps_the_phrase_open() -> None:
    p = PhrasePolicy(PolicyConfig(silence=0.5))
    p.on_note_on(0.0, 0, 60)
    p.on_note_off(1.0, 0, 60)
    p.on_note_on(1.2, 0, 62)  # within the silence: same phrase
    assert p.phrase_start == 0.0 and p.phrase_end() is None
    p.on_pedal(1.9, 0, 127)  # syncopated pedalling: down after the chord was struck
    p.on_note_off(2.0, 0, 62)
    assert p.phrase_end() is None
    p.on_pedal(3.0, 0, 0)
    assert p.phrase_end() == 3.5


def test_a_rolled_chord_held_with_keys_released_in_any_order_stays_open() -> None:
    p = PhrasePolicy(PolicyConfig(silence=0.5))
    for k, pitch in enumerate((48, 52, 55, 60)):
        p.on_note_on(k * 0.06, 0, pitch)  # rolled over 0.18 s
    p.on_note_off(1.0, 0, 60)  # the last struck goes up first
    assert p.phrase_end() is None
    p.on_note_off(1.1, 0, 48)
    p.on_note_off(1.2, 0, 55)
    assert p.phrase_end() is None
    p.on_note_off(1.3, 0, 52)
    assert p.phrase_end() == 1.8


def test_what_was_played_over_no_longer_holds_the_phrase_open() -> None:
    """A key whose note-off was lost, a pedal that never came up, a held pedal point:
    once the player has played other notes over it, the phrase ends when they stop."""
    p = PhrasePolicy(PolicyConfig(silence=0.4))
    p.on_note_on(0.0, 0, 40)  # never released (its note-off lost on the way)
    p.on_pedal(0.1, 1, 127)  # never released either
    assert p.phrase_end() is None
    for k, pitch in enumerate((60, 62, 64)):
        p.on_note_on(1.0 + k * 0.3, 0, pitch)
        p.on_note_off(1.2 + k * 0.3, 0, pitch)
    assert p.holding is False
    assert p.phrase_end() == pytest.approx(2.2)
    p.on_note_off(2.0, 0, 40)  # when the lost key finally comes up, it moves nothing
    p.on_pedal(2.1, 1, 0)
    assert p.phrase_end() == pytest.approx(2.2)


def test_a_pedal_pressed_again_after_its_pedal_up_was_lost_is_a_new_press() -> None:
    """Soak step 288 (seed 11): a pedal that never came up, played over for 15 phrases;
    then a pedal phrase whose second chord comes 0.22 s after its pedal went down. Taken
    as the old press, the pedal no longer held the phrase and it ended at its last key."""
    p = PhrasePolicy(PolicyConfig(silence=0.4))
    p.on_pedal(0.0, 0, 127)  # its pedal-up lost on the way
    p.on_note_on(0.05, 0, 50)
    p.on_note_off(0.3, 0, 50)
    for k in range(3):  # played over
        p.on_note_on(1.0 + k, 0, 60)
        p.on_note_off(1.5 + k, 0, 60)
    assert p.phrase_end() == pytest.approx(3.9)
    assert p.on_pedal(10.0, 0, 127) is True  # pressed again: the same value twice
    p.on_note_on(10.0, 0, 74)
    p.on_note_off(10.15, 0, 74)
    p.on_note_on(10.22, 0, 69)
    p.on_note_off(10.65, 0, 69)
    assert p.phrase_end() is None  # the new press holds the chord
    p.on_pedal(10.88, 0, 0)
    assert p.phrase_end() == pytest.approx(11.28)


def test_a_continuous_pedal_moving_while_down_is_one_press() -> None:
    """Half-pedalling keyboards send every change of the pedal's depth: 90 then 110 while
    held is the same press, and a pedal held through the phrase still ends it at its keys."""
    p = PhrasePolicy(PolicyConfig(silence=0.4))
    p.on_pedal(0.0, 0, 90)
    for k in range(3):
        p.on_note_on(0.5 + k, 0, 60 + k)
        p.on_note_off(1.0 + k, 0, 60 + k)
        assert p.on_pedal(1.1 + k, 0, 100 + k) is False
    assert p.phrase_end() == pytest.approx(3.4)


def test_a_stray_release_or_an_all_notes_off_does_what_it_should() -> None:
    p = PhrasePolicy(PolicyConfig(silence=0.5))
    p.on_note_on(0.0, 0, 60)
    p.on_note_off(0.5, 0, 60)
    p.on_note_off(0.7, 0, 61)  # a note-off whose note-on never came: moves nothing
    assert p.phrase_end() == 1.0
    p.on_note_on(2.0, 3, 50)
    p.on_note_on(2.0, 3, 55)
    p.on_all_notes_off(2.4, 3)  # a DAW's panic releases the channel's keys
    assert p.phrase_end() == 2.9


def test_keys_that_never_come_up_are_released_after_the_hold_limit() -> None:
    p = PhrasePolicy(PolicyConfig(silence=0.5, hold_limit=8.0))
    p.on_note_on(0.0, 0, 60)  # the only note of its phrase, its note-off lost
    assert p.expire(7.9) == []
    gone = p.expire(8.0)
    assert gone == [(("key", 0, 60), 8.0)]
    # let go at the limit: the phrase ends a silence later, as after any release, so the
    # answer is prepared in the silence (ended at once, it went out late under load)
    assert p.phrase_end() == 8.5
    assert p.expire(20.0) == []  # released once


def _feed(p: PhrasePolicy, events: list) -> None:
    """What the daemon tells the policy of each message (live/daemon.py ``_handle_input``)."""
    for t, data in sorted(events, key=lambda e: e[0]):
        m = parse(data)
        if m is None:
            continue
        if m.kind == "on":
            p.on_note_on(t, m.channel, m.a)
        elif m.kind == "off":
            p.on_note_off(t, m.channel, m.a)
        elif m.kind == "cc" and m.a in ALL_NOTES_OFF:
            p.on_all_notes_off(t, m.channel)
        elif m.kind == "cc" and m.a == 64:
            p.on_pedal(t, m.channel, m.b)


def test_the_benchmark_material_agrees_with_the_policy() -> None:
    """live/material.py computes each phrase's end on its own; the policy must agree."""
    from antiphon.live.material import Material

    for step in Material(7, disturb=0.0).steps(300):
        p = PhrasePolicy(PolicyConfig(silence=0.0))
        _feed(p, step.phrase.events)
        assert p.phrase_end() == step.phrase.release == release_time(step.phrase.events), (
            step.phrase.kind
        )
    assert CHORD_WINDOW > 0.12  # the material's rolled chords span up to 0.12 s


def test_the_benchmark_material_agrees_with_one_policy_across_its_steps() -> None:
    """As the daemon hears it: one policy for the whole run, disturbances and all, so what
    one step leaves behind (a lost pedal-up, a key never released, a flood) is there when
    the next phrase is judged. Each phrase must still end where the material says."""
    from antiphon.live.material import Material

    p = PhrasePolicy(PolicyConfig(silence=0.0, hold_limit=1e9))
    t = 0.0
    for i, step in enumerate(Material(11, disturb=0.5).steps(600)):
        if step.before is not None:
            _feed(p, [(t + at, m) for at, m in step.before.events])
            t += max(at for at, _ in step.before.events) + 0.3
        _feed(p, [(t + at, m) for at, m in step.phrase.events])
        end = p.phrase_end()
        assert end == pytest.approx(t + step.phrase.release), (i, step.phrase.kind)
        t += max(at for at, _ in step.phrase.events) + 1.0


@pytest.mark.parametrize("period", [64 / 48000, 256 / 48000, 1024 / 48000])
def test_the_material_ends_where_the_policy_ends_it_after_jack_moves_its_messages(
    period: float,
) -> None:
    """JACK delivers each message at the start of the cycle after it was sent: the daemon
    hears the material's times moved by up to a period. No phrase may sit on the phrase
    rule's edge, where that move changes which release ends it (the bench would score a
    fair answer as 200 ms early)."""
    import math
    import random

    from antiphon.live.material import Material

    rng = random.Random(5)
    for step in Material(11, disturb=0.0, kinds=("pedal", "late-pedal", "legato")).steps(3000):
        phase = rng.uniform(0, period)
        moved = [
            (math.ceil((t + phase) / period) * period - phase, m) for t, m in step.phrase.events
        ]
        p = PhrasePolicy(PolicyConfig(silence=0.0))
        _feed(p, moved)
        end = p.phrase_end()
        assert end is not None and abs(end - step.phrase.release) <= period, step.phrase.kind
