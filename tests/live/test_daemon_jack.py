"""The daemon end to end over real JACK ports: a second client plays into ``<name>:in`` as
a keyboard would and listens on the daemon's output. Assertions are about what was heard,
never about how fast (``antiphon bench --live`` measures that)."""

from __future__ import annotations

import json
import signal
import threading
import time

import mido
import pytest

from antiphon.live.harness import Player
from tests.live.conftest import SILENCE

pytestmark = pytest.mark.jack


def answer_to(player: Player, pitches=(60, 64, 67, 72), timeout: float = 4.0) -> tuple[float, list]:
    t_off = player.phrase(pitches)
    first = player.wait_for(
        lambda r: r.t > t_off and r.data[0] & 0xF0 == 0x90 and r.data[2] > 0, SILENCE + timeout
    )
    return t_off, ([] if first is None else [first])


def test_a_phrase_gets_a_response_after_the_silence(live) -> None:
    daemon, player = live
    assert "ready" in daemon.ready_line and f"{daemon.name}:in" in daemon.ready_line
    assert " provider=" in daemon.ready_line  # onnxruntime's, cpu or cuda
    t_off, first = answer_to(player)
    assert first, "no answer"
    # not before the silence has run (JACK may move a message by up to a period)
    assert first[0].t >= t_off + SILENCE - 0.006
    # an answer, not a blip: a second note follows (the model may hold the first a while)
    second = player.wait_for(
        lambda r: r.t > first[0].t and r.data[0] & 0xF0 == 0x90 and r.data[2] > 0, 4.0
    )
    assert second is not None, "the answer was a single note"
    # A server that is not realtime is named in the log (the tests' own is not; seconds
    # have passed: the log's reader has its line).
    from antiphon.live.jack import server_realtime

    realtime = server_realtime()
    assert realtime is not None
    warned = any("without realtime scheduling" in line for line in daemon.stderr_lines)
    assert warned == (not realtime)


def test_barge_in_releases_every_note(live) -> None:
    _daemon, player = live
    for _ in range(3):
        _, first = answer_to(player)
        assert first
        time.sleep(0.15)
        if player.hanging():
            break
    assert player.hanging(), "antiphon was not holding a note to barge in on"
    t_new = player.send([0x90, 62, 90])
    cleared = player.wait_for(lambda r: r.t > t_new and r.data[:2] == [0xB0, 123], 1.0)
    assert cleared is not None, "no All Notes Off after the barge-in"
    assert not player.hanging()  # every note antiphon held got its note-off
    ons_after = [r for r in player.note_ons(t_new) if r.t <= cleared.t]
    assert not ons_after
    player.send([0x80, 62, 0])
    _t_off, again = answer_to(player, (65, 69))
    assert again, "the next phrase was not answered"


def test_sigint_leaves_no_note_sounding(live) -> None:
    daemon, player = live
    _, first = answer_to(player)
    assert first
    time.sleep(0.1)
    daemon.signal(signal.SIGINT)
    assert daemon.wait(5) == 0
    time.sleep(0.05)
    assert player.hanging() == {}
    tail = [r.data for r in player.heard()][-2:]
    assert tail == [[0xB0, 64, 0], [0xB0, 123, 0]]  # pedal up, then all notes off, last


def test_sigterm_exits_cleanly_too(live) -> None:
    daemon, player = live
    answer_to(player)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(5) == 0
    time.sleep(0.05)
    assert player.hanging() == {}


MALFORMED = [
    [0x45],  # a stray data byte
    [0x45, 0x12, 0x7F],
    [0xF4],  # undefined status bytes
    [0xF5, 0x01],
    [0xFD],
    [0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7],  # sysex
    [0x90, 60],  # truncated note-on
    [0x95, 0x90, 0x80],  # status bytes where data should be
    [0x80, 61, 0],  # note-offs without note-ons
    [0x83, 99, 64],
    [0x90, 62, 0],  # velocity-0 note-on (a note-off)
    [0xB0, 64, 0],  # pedal up that was never down
    [0xE0, 0, 64],  # pitch bend: ignored
]


def test_malformed_input_never_stops_the_daemon(live) -> None:
    daemon, player = live
    for msg in MALFORMED:
        player.send(msg)
    # a flood: thousands of messages in about a second
    for i in range(3000):
        player.send([0x90 | (i % 16), 30 + i % 60, 1 + i % 126])
        player.send([0x80 | (i % 16), 30 + i % 60, 0])
        if i % 300 == 0:
            time.sleep(0.05)
    time.sleep(SILENCE + 0.5)
    # A flood overflows JACK's per-period MIDI buffer, so some note-offs never arrive:
    # a DAW's panic (All Notes Off on every channel) is what frees those keys.
    for ch in range(16):
        player.send([0xB0 | ch, 123, 0])
    time.sleep(0.5)
    assert daemon.proc.poll() is None, daemon.stderr_lines[-5:]
    _t_off, first = answer_to(player, timeout=6.0)
    assert first, "the daemon stopped answering after malformed input"
    assert not any("Traceback" in line for line in daemon.stderr_lines)


@pytest.mark.daemon_args("--record", "@session.mid", "--stats", "@stats.jsonl")
def test_record_contains_every_note_played(live, tmp_path) -> None:
    daemon, player = live
    rec = tmp_path / "session.mid"
    played = [60, 64, 67, 72, 62, 65, 69]
    answer_to(player, played[:4])
    time.sleep(0.3)
    answer_to(player, played[4:])
    player.send([0x90, 48, 80])  # still held at exit
    time.sleep(0.1)
    daemon.signal(signal.SIGINT)
    assert daemon.wait(5) == 0
    mid = mido.MidiFile(rec)
    names = [next((m.name for m in t if m.type == "track_name"), "") for t in mid.tracks]
    player_track = mid.tracks[names.index("player")]
    ons = [m.note for m in player_track if m.type == "note_on" and m.velocity > 0]
    assert ons == [*played, 48]
    offs = [
        m.note
        for m in player_track
        if m.type == "note_off" or (m.type == "note_on" and m.velocity == 0)
    ]
    assert sorted(offs) == sorted([*played, 48])  # the held key is closed at exit
    antiphon_track = mid.tracks[names.index("antiphon")]
    heard = len(player.note_ons())
    assert sum(m.type == "note_on" and m.velocity > 0 for m in antiphon_track) == heard
    # and --stats wrote one line per answer, with the latency of its first note
    rows = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert len(rows) >= 2
    assert all(r["tokens"] > 0 and r["generation_ms"] > 0 for r in rows)
    # (heard no sooner than the scheduler's lead, 0.3 ms, before its due time)
    assert any(r["first_note_sent"] is not None and r["latency_ms"] > -0.5 for r in rows)


class ClockSender:
    """Sends MIDI clock (24 per quarter) from the player's port, remembering tick times."""

    def __init__(self, player: Player) -> None:
        self.player = player
        self.ticks: list[float] = []
        self.bpm = 120.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.player.send([0xFA])
        self._thread.start()

    def _run(self) -> None:
        t = time.perf_counter()
        while not self._stop.is_set():
            while time.perf_counter() < t:
                time.sleep(0.0002)
            self.ticks.append(self.player.send([0xF8]))
            t += 60.0 / self.bpm / 24

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.daemon_args("--clock", "--quantize", "1/16")
def test_clock_follows_a_tempo_change(live) -> None:
    _daemon, player = live
    clock = ClockSender(player)
    clock.start()
    try:
        time.sleep(1.5)
        clock.bpm = 90.0
        changed = len(clock.ticks)
        time.sleep(2.0)
        t_off, first = answer_to(player, (60, 62, 64, 65, 67))
        assert first, "no answer while following the clock"
        time.sleep(1.5)
        onsets = [r.t for r in player.note_ons(t_off)]
    finally:
        clock.stop()
    ticks = clock.ticks
    period90 = 60.0 / 90.0 / 24

    def distance_to_grid(t: float, every: int) -> float:
        # clock ticks after the change are on the 90 bpm grid; lines every ``every`` ticks
        # counted from the start message
        k = round((t - ticks[changed]) / period90) + changed
        k = round(k / every) * every
        line = ticks[k] if k < len(ticks) else ticks[changed] + (k - changed) * period90
        return abs(t - line)

    slack = 0.015  # JACK delivers once per period, in and out
    # the answer starts on a 1/16 line of the new tempo, its notes on the model's 1/32 grid
    assert distance_to_grid(onsets[0], 6) < slack
    assert all(distance_to_grid(t, 3) < slack for t in onsets)
    assert len(onsets) >= 2
