from __future__ import annotations

import itertools

import pytest

from antiphon.models.midi.notes import (
    Grid,
    MidiFileError,
    NoteStream,
    RawEvent,
    canonicalize,
    read_midi_events,
    read_performance,
)

GRID = Grid(tpq=8)


def notes(events: list[RawEvent]) -> list[tuple[int, int | None, int, int]]:
    return [(n.start, n.end, n.pitch, n.velocity) for n in canonicalize(events, GRID).notes]


def test_times_round_half_up_and_short_notes_last_one_tick() -> None:
    got = notes([RawEvent(0.0625, "on", 0, 60, 99), RawEvent(0.07, "off", 0, 60)])
    assert got == [(1, 2, 60, 99)]  # 0.0625 beats = 0.5 tick -> 1; zero length -> one tick


def test_velocity_snaps_to_nearest_bin_ties_up() -> None:
    assert GRID.velocity(5) == 7 and GRID.velocity(4) == 3 and GRID.velocity(127) == 127
    assert GRID.velocity(1) == 3 and GRID.velocity(200) == 127


def test_restrike_of_a_sounding_pitch_ends_it_there() -> None:
    got = notes(
        [
            RawEvent(0, "on", "a", 60, 80),
            RawEvent(1, "on", "b", 60, 80),
            RawEvent(1.5, "off", "b", 60),
            RawEvent(3, "off", "a", 60),  # the first voice's late note-off is ignored
        ]
    )
    assert got == [(0, 8, 60, 79), (8, 12, 60, 79)]


def test_restrike_on_the_same_tick_keeps_only_the_later_note() -> None:
    got = notes(
        [
            RawEvent(0, "on", "a", 60, 40),
            RawEvent(0.01, "on", "b", 60, 90),
            RawEvent(1, "off", "b", 60),
        ]
    )
    assert got == [(0, 8, 60, 91)]


def test_out_of_range_pitches_are_dropped_with_their_note_offs() -> None:
    got = notes(
        [RawEvent(0, "on", 0, 20, 80), RawEvent(1, "off", 0, 20), RawEvent(0, "on", 0, 21, 80)]
    )
    assert [n[2] for n in got] == [21]


def test_pedal_going_down_on_the_tick_it_went_up_continues() -> None:
    perf = canonicalize(
        [
            RawEvent(0, "pedal", 0, 127),
            RawEvent(0, "on", 0, 60, 80),
            RawEvent(1, "pedal", 0, 0),
            RawEvent(1.01, "pedal", 0, 127),  # same tick: one long pedal
            RawEvent(2, "pedal", 0, 10),
            RawEvent(2, "off", 0, 60),
        ],
        GRID,
    )
    assert [(p.start, p.end) for p in perf.pedals] == [(0, 16)]


def test_pedal_is_down_while_any_source_holds_it() -> None:
    perf = canonicalize(
        [
            RawEvent(0, "pedal", "a", 127),
            RawEvent(0.5, "pedal", "b", 127),
            RawEvent(1, "pedal", "a", 0),
            RawEvent(2, "pedal", "b", 0),
            RawEvent(0, "on", 0, 60, 80),
            RawEvent(3, "off", 0, 60),
        ],
        GRID,
    )
    assert [(p.start, p.end) for p in perf.pedals] == [(0, 16)]


def test_ticks_close_in_order_and_only_once_time_moves_on() -> None:
    s = NoteStream(GRID)
    s.note_on(0, 60, 80)
    assert s.advance(0.01) == []  # tick 0 may still receive events
    s.note_on(0.02, 64, 80)
    closed = s.advance(1)
    assert [(t.tick, [n.pitch for n in t.ons]) for t in closed] == [(0, [60, 64])]
    s.note_off(1, 60)
    assert s.holding
    s.note_off(1, 64)
    assert not s.holding
    closed = s.finish()
    assert [(t.tick, sorted(n.pitch for n in t.offs)) for t in closed] == [(8, [60, 64])]


def test_events_earlier_than_a_closed_tick_move_to_the_first_open_one() -> None:
    s = NoteStream(GRID)
    s.note_on(1, 60, 80)
    s.advance(2)
    s.note_off(0.5, 60)  # jitter backwards in time
    (tick,) = s.finish()
    assert tick.tick == 16 and tick.offs[0].end == 16


def test_reading_a_real_file(chorale) -> None:
    events = read_midi_events(chorale)
    assert events and all(a.beat <= b.beat for a, b in itertools.pairwise(events))
    perf = read_performance(chorale, GRID)
    assert len(perf.notes) == 154
    assert {n.pitch for n in perf.notes} <= set(range(21, 109))


def test_drums_are_not_notes(expressive) -> None:
    def drum_hits(events: list[RawEvent]) -> int:
        return sum(e.kind == "on" and e.source[1] == 9 for e in events)

    assert drum_hits(read_midi_events(expressive, skip_drums=False)) == 1
    assert drum_hits(read_midi_events(expressive)) == 0


@pytest.mark.parametrize(
    "content", [b"", b"garbage bytes, not MIDI", b"MThd\x00\x00\x00\x06\x00\x01"]
)
def test_corrupt_files_raise_a_user_error(tmp_path, content: bytes) -> None:
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(MidiFileError, match=r"bad\.mid"):
        read_performance(path, GRID)


def test_a_file_without_notes_is_an_error(tmp_path) -> None:
    import mido

    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    mid.save(tmp_path / "empty.mid")
    with pytest.raises(MidiFileError, match="no notes"):
        read_performance(tmp_path / "empty.mid", GRID)


def test_all_notes_off_releases_only_that_sources_keys() -> None:
    s = NoteStream(GRID)
    s.note_on(0, 60, 80, "a")
    s.note_on(0, 64, 80, "b")
    s.pedal(0, 127, "a")
    s.all_notes_off(1, "a")
    assert s.holding_except("b")  # a's pedal is still down
    s.pedal(1, 0, "a")
    assert not s.holding_except("b") and s.holding
    ticks = s.finish(2)
    offs = {n.pitch: n.end for t in ticks for n in t.offs}
    assert offs == {60: 8, 64: 16}
