"""Nothing played before a phrase can silence it: over real JACK ports, each thing a
keyboard, a DAW or a broken cable can send is followed by a phrase, and that phrase must be
answered. Assertions are about what was heard (answered or not, notes released), never
about how fast: ``antiphon bench --live`` measures that."""

from __future__ import annotations

import json
import random
import signal
import time

import mido
import pytest

from antiphon.live.harness import DaemonProcess, Player
from antiphon.live.livebench import Tap, _play
from antiphon.live.material import Material
from tests.live.conftest import SILENCE

pytestmark = [pytest.mark.jack, pytest.mark.daemon_args("--max-response", "2")]


def answered(player: Player, pitches=(60, 64, 67, 72), timeout: float = 4.0) -> bool:
    """Play a phrase; whether an answer (a note-on after its last note-off) is heard."""
    t_off = player.phrase(pitches)
    first = player.wait_for(
        lambda r: r.t > t_off and r.data[0] & 0xF0 == 0x90 and r.data[2] > 0, SILENCE + timeout
    )
    return first is not None


def flood(player: Player, seconds: float = 1.0, rate: int = 20000, seed: int = 0) -> None:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    n = int(seconds * rate / 2)
    for i in range(n):
        ch, p = rng.randrange(16), rng.randint(21, 108)
        player.send([0x90 | ch, p, rng.randint(1, 127)])
        player.send([0x80 | ch, p, 0])
        if i % 50 == 49:  # bursts of 100 messages: what a JACK period carries
            time.sleep(max(0.0, t0 + (i + 1) / n * seconds - time.perf_counter()))


def no_traceback(daemon: DaemonProcess) -> None:
    assert daemon.proc.poll() is None, daemon.stderr_lines[-5:]
    assert not any("Traceback" in line for line in daemon.stderr_lines)


def test_after_garbage_sysex_and_a_truncated_sysex_the_next_phrase_is_answered(live) -> None:
    daemon, player = live
    garbage = [
        [0x45],
        [0x45, 0x12, 0x7F],
        [0xF4],
        [0xF5, 0x01],
        [0xFD],
        [0x90, 60],
        [0x95, 0x90, 0x80],
        [0x80, 61, 0],
        [0x90, 62, 0],
        [0xB0, 64, 0],
        [0xE0, 0, 64],
        [0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7],
    ]
    for msg in garbage:
        player.send(msg)
    player.send([0xF0, 0x7E, 0x01])  # a sysex cut short: rtmidi would glue on all that follows
    time.sleep(0.05)
    assert answered(player)
    assert answered(player, (62, 65))
    no_traceback(daemon)


@pytest.mark.daemon_args("--record", "@session.mid")
def test_after_a_flood_the_next_phrase_is_answered_and_recorded(live, tmp_path) -> None:
    daemon, player = live
    tap = Tap(player.client, player.inp.cycles)  # what really reached the daemon's port
    try:
        flood(player)  # 20,000 messages in a second, no panic afterwards
        time.sleep(0.5)
        assert answered(player, timeout=6.0), "no answer after a flood"
        assert answered(player, (65, 69))
    finally:
        tap.close()
    no_traceback(daemon)
    daemon.signal(signal.SIGINT)
    assert daemon.wait(10) == 0
    mid = mido.MidiFile(tmp_path / "session.mid")
    track = next(
        t for t in mid.tracks if any(m.type == "track_name" and m.name == "player" for m in t)
    )
    recorded = sum(1 for m in track if m.type == "note_on" and m.velocity > 0)
    # Every note-on that reached the port is in the recording (give or take the few bursts a
    # non-realtime JACK client can miss on a loaded machine; see test_ports).
    assert recorded >= tap.note_ons - 150
    assert not [line for line in daemon.stderr_lines if "dropped" in line]


LOST = {
    "note-off": [[0x90, 40, 90]],  # a key whose note-off never comes
    "pedal-up": [[0xB0, 64, 127], [0x90, 50, 80], [0x80, 50, 0]],  # a pedal never lifted
}


@pytest.mark.parametrize("lost", sorted(LOST))
def test_a_lost_note_off_or_pedal_up_does_not_silence_the_next_phrase(live, lost) -> None:
    daemon, player = live
    for msg in LOST[lost]:
        player.send(msg)
        time.sleep(0.1)
    time.sleep(0.4)
    assert answered(player)
    assert answered(player, (62, 65))
    no_traceback(daemon)


def test_a_pedal_pressed_again_after_a_lost_pedal_up_holds_its_phrase(live) -> None:
    """A pedal whose pedal-up was lost, played over, then a pedal phrase whose second chord
    comes within the chord window of the new press: the answer waits for the pedal-up (the
    new press is not taken for the old one, as in a soak's step 288)."""
    daemon, player = live
    for msg in LOST["pedal-up"]:
        player.send(msg)
        time.sleep(0.1)
    assert answered(player)  # played over the lost pedal
    time.sleep(2.5)  # the answer (--max-response 2) plays out
    player.send([0xB0, 64, 127])
    for p in (74, 78):
        player.send([0x90, p, 70])
    time.sleep(0.15)
    for p in (74, 78):
        player.send([0x80, p, 0])
    time.sleep(0.07)  # the second chord 0.22 s after the pedal went down
    player.send([0x90, 69, 70])
    time.sleep(0.4)
    t_keys = player.send([0x80, 69, 0])
    time.sleep(SILENCE + 0.3)
    t_pedal = player.send([0xB0, 64, 0])  # the phrase ends a silence after this
    first = player.wait_for(
        lambda r: r.t > t_keys and r.data[0] & 0xF0 == 0x90 and r.data[2] > 0, SILENCE + 4.0
    )
    assert first is not None, "the pedal phrase was not answered"
    assert first.t > t_pedal, "answered while the new press of the pedal still held the chord"
    assert any("went down again with no pedal-up" in line for line in daemon.stderr_lines)
    no_traceback(daemon)


def test_all_notes_off_releases_what_the_player_held(live) -> None:
    daemon, player = live
    for p in (48, 52, 55):
        player.send([0x90, p, 80])
    time.sleep(0.1)
    player.send([0xB0, 123, 0])  # a DAW's panic
    time.sleep(SILENCE + 1.0)
    assert answered(player)
    no_traceback(daemon)


@pytest.mark.daemon_args("--hold-limit", "1.0")
def test_a_key_that_never_comes_up_is_released_after_the_hold_limit(live) -> None:
    daemon, player = live
    t = player.send([0x90, 60, 90])  # the phrase's only note; its note-off is lost
    first = player.wait_for(lambda r: r.t > t and r.data[0] & 0xF0 == 0x90 and r.data[2] > 0, 4.0)
    assert first is not None, "the phrase held open by a stuck key was never answered"
    assert first.t - t >= 1.0  # not before the hold limit
    assert any("treated as released" in line for line in daemon.stderr_lines)
    assert answered(player, (62, 65))


@pytest.mark.daemon_args("--hold-limit", "2.0")
def test_every_phrase_of_varied_material_with_disturbances_is_answered(live) -> None:
    """Seeded: rhythms, chords, legato, pedal, re-strikes, channels, barge-ins, and before
    about half of the phrases garbage, a flood, a lost note-off or pedal-up, a panic."""
    daemon, player = live
    material = Material(11, disturb=0.5, flood_seconds=0.5)
    missed = []
    for k, step in enumerate(material.steps(12)):
        if step.before is not None:
            _play(player, step.before.events)
            time.sleep(0.3)
        sent = _play(player, step.phrase.events)
        release = max(
            sent[i]
            for i, (at, _) in enumerate(step.phrase.events)
            if abs(at - step.phrase.release) < 1e-9
        )
        first = player.wait_for(
            lambda r, release=release: r.t > release and r.data[0] & 0xF0 == 0x90 and r.data[2],
            SILENCE + 4.0,
        )
        if first is None:
            missed.append((k, step.phrase.kind, step.before and step.before.kind))
        time.sleep(step.barge_after if step.barge_after is not None else 2.3)
    assert not missed
    no_traceback(daemon)
    daemon.signal(signal.SIGINT)
    assert daemon.wait(10) == 0
    time.sleep(0.05)
    assert player.hanging() == {}


def test_the_live_bench_plays_its_material_and_reports_every_phrase(jack_server, tmp_path) -> None:
    """``antiphon bench --live`` end to end (its own daemon on the running server): every
    phrase of the seeded material, disturbances included, is answered and accounted for."""
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "antiphon",
            "bench",
            "--live",
            "--phrases",
            "6",
            "--seed",
            "3",
            "--disturb",
            "0.5",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "6/6 phrases answered, 0 missed" in done.stdout
    assert "a running JACK server, daemon not realtime" in done.stdout
    s = json.loads(out.read_text())["summary"]
    assert s["answered"] == 6 and s["hanging_notes"] == 0 and s["exit_code"] == 0
    assert s["jack_realtime"] is None and s["daemon_realtime"] is False
    # what the player sent is what reached the port and what the daemon recorded
    assert s["recorded_note_ons"] == s["reached_note_ons"] == s["sent_note_ons"] > 0
    assert s["stats_rows"] == 6
