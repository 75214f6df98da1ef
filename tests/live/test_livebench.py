"""The live bench's listener dates a phrase end by the arrival of its release, as heard on
its own JACK client (``first_arrival``), not by the player's send: pure logic here, the
bench end to end in test_daemon_survives."""

from __future__ import annotations

import json
from pathlib import Path

from antiphon.live.livebench import LiveBench, PhraseResult, _read_daemon_files, first_arrival

OFF = [0x80, 60, 0]


def test_the_release_is_dated_by_the_cycle_that_carried_it() -> None:
    heard = [(1.0, [0x90, 60, 80]), (1.2013, OFF), (1.2026, [0x90, 64, 80])]
    assert first_arrival(heard, OFF, sent=1.2005) == 1.2013


def test_the_same_message_played_earlier_is_not_the_release() -> None:
    heard = [(0.5, OFF), (0.9, [0x90, 60, 80]), (1.2013, OFF)]
    assert first_arrival(heard, OFF, sent=1.2005) == 1.2013
    assert first_arrival(heard[:2], OFF, sent=1.2005) is None  # not there yet


def test_a_cycle_start_dated_microseconds_before_the_send_still_counts() -> None:
    # the server's timer dates the cycle; our clock read the send a hair later
    assert first_arrival([(1.19998, OFF)], OFF, sent=1.2) == 1.19998


def test_two_such_messages_after_the_send_give_the_first() -> None:
    heard = [(1.2013, OFF), (1.2026, OFF)]
    assert first_arrival(heard, list(OFF), sent=1.2005) == 1.2013


def test_a_reader_held_up_past_a_cycle_start_is_narrowed_by_the_send() -> None:
    """The tap's reader slept from cycle 1.2000 to 1.2026: the release came in 1.2013 or
    1.2026 by what it saw, and it dated it 1.2026 (the cycle it saw it in). The player sent
    it at 1.2005, so the first cycle it could reach was 1.2013: that one carried it."""
    heard = [(1.0, [0x90, 60, 80], 1.0), (1.2026, OFF, 1.2013)]
    assert first_arrival(heard, OFF, sent=1.2005) == 1.2026  # no send bound: as dated
    assert first_arrival(heard, OFF, sent=1.2005, carried=(1.2013, 1.2013)) == 1.2013
    # a reader that knows the exact cycle keeps it, whatever the send would allow
    exact = [(1.2026, OFF, 1.2026)]
    assert first_arrival(exact, OFF, sent=1.2005, carried=(1.2013, 1.2013)) == 1.2026
    # a send bound later than the date is not taken (the send came after a cycle began but
    # before the player's client ran in it, and so rode that cycle)
    late = [(1.2013, OFF, 1.2000)]
    assert first_arrival(late, OFF, sent=1.2012, carried=(1.2026, 1.2026)) == 1.2013


def test_a_send_at_a_cycles_edge_leaves_the_choice_to_the_reader() -> None:
    """Sent at a cycle's edge, the release rode 1.2013 or 1.2026. Where the tap dated it to
    one of them, that one (the earlier as a bound took 3 releases in 200 a cycle early);
    where its reader slept and guessed a later cycle, the later one its bounds allow."""
    edge = (1.2013, 1.2026)
    assert first_arrival([(1.2026, OFF, 1.2026)], OFF, sent=1.2012, carried=edge) == 1.2026
    assert first_arrival([(1.2013, OFF, 1.2013)], OFF, sent=1.2012, carried=edge) == 1.2013
    # slept from 1.2000 and guessed 1.2039: it came in one of the two, the later is nearer
    assert first_arrival([(1.2039, OFF, 1.2000)], OFF, sent=1.2012, carried=edge) == 1.2026
    # guessed 1.2026 with 1.2013 allowed: its own date stands
    assert first_arrival([(1.2026, OFF, 1.2000)], OFF, sent=1.2012, carried=edge) == 1.2026
    # dated outside both (a stalled server): the reader's date
    assert first_arrival([(1.2052, OFF, 1.2039)], OFF, sent=1.2012, carried=edge) == 1.2052


def test_late_events_are_summed_from_the_rows_and_the_session_line(tmp_path: Path) -> None:
    """Each --stats row counts the late events since the row before; the daemon's last log
    line counts the whole session (the tail after the last answer too)."""
    bench = LiveBench(phrases=3, period_ms=1.33, start_s=0.3)
    bench.results = [
        PhraseResult("single", None, 10.0, 1.3),
        PhraseResult("chords", "flood", 20.0, 1.3),
        PhraseResult("legato", None, 30.0, 1.3),
    ]
    rows = [
        {"phrase_end": 10.0, "latency_ms": 1.3, "late_events": 0, "gc_pauses": 0},
        {
            "phrase_end": 20.001,
            "latency_ms": 1.3,
            "late_events": 2,
            "worst_late_ms": 3.5,
            "gc_pauses": 1,
            "gc_pause_ms": 4.2,
        },
        {"phrase_end": 30.0, "latency_ms": 1.3, "late_events": 0, "gc_pauses": 0},
    ]
    stats = tmp_path / "stats.jsonl"
    stats.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _read_daemon_files(bench, stats, tmp_path / "none.mid")
    assert bench.daemon_late_events == 2 and bench.late_rows == [(1, 2, 3.5, 4.2)]
    s = bench.summary()
    assert s["late_after"] == ["chords after flood"]
    assert s["daemon_worst_late_ms"] == 3.5
    assert (s["gc_pauses"], s["gc_pause_max_ms"], s["late_beside_gc"]) == (1, 4.2, 2)

    bench.log_warnings = [
        "antiphon: 3 events went out more than 2 ms late this session (the worst 3.5 ms late)"
    ]
    _read_daemon_files(bench, stats, tmp_path / "none.mid")
    assert bench.daemon_late_events == 3  # one after the last answer's row


def test_an_answer_to_no_phrase_of_the_bench_is_kept_with_where_it_came(tmp_path: Path) -> None:
    """A late answer to a key the daemon let go after its limit is no phrase the bench
    played: it shows among the other rows, with the phrase it followed, not only in the
    daemon's log."""
    bench = LiveBench(phrases=2, period_ms=1.33, start_s=0.3)
    bench.results = [
        PhraseResult("single", None, 10.0, 1.3),
        PhraseResult("chords", None, 20.0, 1.3),
    ]
    rows = [
        {"phrase_end": 10.0, "latency_ms": 1.3},
        {"phrase_end": 14.5, "latency_ms": 48.0, "late": True, "late_ms": 47.0},
        {"phrase_end": 20.0, "latency_ms": 1.3},
    ]
    stats = tmp_path / "stats.jsonl"
    stats.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _read_daemon_files(bench, stats, tmp_path / "none.mid")
    assert [r.daemon_row for r in bench.results] == [True, True]
    (other,) = bench.other_rows
    assert other["after_phrase"] == 0 and other["seconds_after"] == 4.5 and other["late"]
    s = bench.summary()
    assert (s["other_answers"], s["other_answers_late"]) == (1, 1)
