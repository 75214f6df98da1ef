"""``kill -9`` of the daemon mid-session (the OOM killer, a frozen laptop, a power cut):
``--record`` and ``--stats`` files hold what was played and answered until moments before.

Real processes over the JACK dummy server, as in ``test_daemon_jack``; assertions are about
what the files hold, never about how fast they were written."""

from __future__ import annotations

import json
import signal
import time

import mido
import pytest

from antiphon.atomic import read_lines
from antiphon.live.recorder import SAVE_INTERVAL
from tests.live.test_daemon_jack import answer_to

pytestmark = pytest.mark.jack
PHRASES = [
    [60, 62, 64, 65, 67, 69, 71, 72, 74, 76],
    [67, 65, 64, 62, 60, 59, 57, 55, 53, 52],
    [48, 52, 55, 60, 64, 67, 72, 76, 79, 84],
    [70, 68, 66, 65, 63, 61, 60, 58, 56, 54],
]


@pytest.mark.daemon_args("--record", "@rec.mid", "--stats", "@stats.jsonl", "--max-response", "2")
def test_kill_9_mid_session_leaves_the_recording_and_the_stats(live, tmp_path) -> None:
    daemon, player = live
    rec, stats = tmp_path / "rec.mid", tmp_path / "stats.jsonl"
    for pitches in PHRASES:  # 40 notes played, each phrase answered
        _t_off, first = answer_to(player, pitches)
        assert first, "no answer"
        time.sleep(0.5)
    # Everything up to here must be in the files: wait out one save interval, then die
    # mid-session, as a crash would (the daemon may still be answering).
    time.sleep(SAVE_INTERVAL + 1.0)
    t_kill = time.perf_counter()
    daemon.proc.send_signal(signal.SIGKILL)
    assert daemon.wait(5) == -signal.SIGKILL

    mid = mido.MidiFile(rec)  # readable: a complete file, not a torn one
    names = [next((m.name for m in t if m.type == "track_name"), "") for t in mid.tracks]
    player_track = mid.tracks[names.index("player")]
    ons = [m.note for m in player_track if m.type == "note_on" and m.velocity > 0]
    assert ons == [p for phrase in PHRASES for p in phrase], daemon.stderr_lines[-10:]
    heard_before = [r for r in player.note_ons() if r.t < t_kill - SAVE_INTERVAL - 0.5]
    antiphon_track = mid.tracks[names.index("antiphon")]
    recorded = sum(m.type == "note_on" and m.velocity > 0 for m in antiphon_track)
    assert recorded >= len(heard_before) > 0
    rows = [json.loads(line) for line in read_lines(stats)]
    assert len(rows) >= len(PHRASES) - 1 and all(r["tokens"] > 0 for r in rows)


# This very file where the recording's folder should be: every save fails, as root too.
BLOCKED = f"{__file__}/rec.mid"


@pytest.mark.daemon_args("--record", BLOCKED)
def test_an_unwritable_recording_is_said_once_and_the_daemon_plays_on(live) -> None:
    daemon, player = live
    for pitches in PHRASES[:3]:
        _t_off, first = answer_to(player, pitches)
        assert first, "the daemon stopped answering when its recording could not be written"
        time.sleep(SAVE_INTERVAL / 2)
    assert daemon.proc.poll() is None
    said = [line for line in daemon.stderr_lines if "cannot write the recording" in line]
    assert len(said) == 1 and BLOCKED in said[0] and "still playing" in said[0]
    daemon.signal(signal.SIGINT)
    assert daemon.wait(5) == 2  # the final file could not be written either: one line, exit 2
    time.sleep(0.2)
    assert daemon.stderr_lines[-1].startswith("antiphon: error: ")
    assert f"{BLOCKED}: cannot write the recording" in daemon.stderr_lines[-1]
    assert not any("Traceback" in line for line in daemon.stderr_lines)
