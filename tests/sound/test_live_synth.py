"""``antiphon live --synth`` over a real JACK server (dummy driver): the daemon's FluidSynth
plays on real JACK audio ports, recorded by a second client that dates every block on
``perf_counter``, the clock the player dates its MIDI with. The bundled model answers."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.sound.conftest import rms
from tests.sound.jackcapture import Capture

pytestmark = pytest.mark.jack
jack = pytest.importorskip("jack", reason="pip install JACK-Client")

PHRASE = [60, 64, 67, 72, 67]
SILENCE_MS = 300
FLOOR = 0.005  # RMS of a played note is well above it (measured: 0.02-0.03)
QUIET = 1e-3  # peak of "nothing sounds"
# The synth hears a note when the daemon sends it; the ear hears it on JACK's next cycle.
# Both are within a few periods (5.3 ms each here) of each other; this is a generous bound.
ALIGN = 0.05
RELEASED = 2.5  # seconds after its note-off a piano note's release and reverb are below QUIET
_names = itertools.count()


@pytest.fixture
def synth_daemon(jack_server, soundfont, request, tmp_path) -> Iterator:  # type: ignore[no-untyped-def]
    from antiphon.live.harness import DaemonProcess, Player

    marker = request.node.get_closest_marker("daemon_args")
    extra = list(marker.args) if marker else []
    name = f"antiphon-snd{os.getpid()}-{next(_names)}"
    daemon = DaemonProcess(
        ["--synth", "--silence-ms", str(SILENCE_MS), "--seed", "3", *extra], name=name
    )
    player = ear = None
    try:  # whatever fails to open, the daemon is stopped
        player = Player(daemon_name=name, client=name + "-kbd")
        ear = Capture(name + "-ear-audio", [f"{name}-synth:left", f"{name}-synth:right"], tmp_path)
        yield daemon, player, ear
    finally:
        if ear is not None:
            ear.close()
        if player is not None:
            player.close()  # first: see antiphon.live.jack on closing as the graph changes
        daemon.kill()


def answer(player, after: float, timeout: float = 30.0) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(first note-on, last message) of the answer heard on the MIDI port after ``after``,
    once nothing more has come for a second."""
    first = player.wait_for(lambda r: r.t > after and r.data[0] & 0xF0 == 0x90, timeout)
    assert first is not None, "no answer"
    while time.perf_counter() - player.heard(after)[-1].t < 1.0:
        time.sleep(0.05)
    return first.t, player.heard(after)[-1].t


def test_the_answer_sounds_on_the_synths_jack_ports(synth_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon, player, ear = synth_daemon
    assert " synth=jack:" in daemon.ready_line
    t0 = time.perf_counter()
    phrase_end = player.phrase(PHRASE)
    first, last = answer(player, phrase_end)
    # The player's notes are not played (no --synth-input): silence until the answer.
    before = ear.audio(t0, first - ALIGN)
    assert before.size and np.abs(before).max() < QUIET
    heard = ear.onset(t0)
    assert heard is not None and abs(heard - first) < ALIGN, (heard, first)
    assert rms(ear.audio(first, max(last, first + 0.3))) > FLOOR
    print(f"synth onset - MIDI arrival: {(heard - first) * 1e3:+.1f} ms")
    # Every note ended: nothing sounds once the releases (up to 1.2 s measured) and the reverb
    # have died away. (What the MIDI port delivered is the end-to-end tests' business: a late
    # ear can miss a cycle.)
    time.sleep(max(0.0, last + RELEASED + 0.5 - time.perf_counter()))
    after = ear.audio(last + RELEASED)
    assert after.size and np.abs(after).max() < QUIET


@pytest.mark.daemon_args("--synth-input")
def test_synth_input_plays_the_players_notes_too(synth_daemon) -> None:  # type: ignore[no-untyped-def]
    _, player, ear = synth_daemon
    t0 = player.send([0x90, 60, 100])
    time.sleep(0.4)
    player.send([0x80, 60, 0])
    first, last = answer(player, t0 + 0.4)
    heard = ear.onset(t0 - 1.0)
    assert heard is not None and abs(heard - t0) < ALIGN, (heard, t0)
    assert rms(ear.audio(t0, t0 + 0.4)) > FLOOR
    assert rms(ear.audio(first, max(last, first + 0.3))) > FLOOR  # and the answer after it
    print(f"synth onset - player's note-on sent: {(heard - t0) * 1e3:+.1f} ms")


@pytest.mark.daemon_args("--synth-input")
def test_panic_silences_the_players_held_notes_and_antiphons(synth_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon, player, ear = synth_daemon
    player.send([0xB0, 64, 127])  # pedal down: the release below does not end the note
    player.send([0x90, 48, 110])
    time.sleep(0.3)
    player.send([0x80, 48, 0])
    time.sleep(0.5)
    t = time.perf_counter()
    assert rms(ear.audio(t - 0.2)) > FLOOR / 2  # still ringing, held by the pedal
    player.send([0xB0, 81, 127])  # the panic CC
    time.sleep(2.0)
    after = ear.audio(t + 1.5)
    assert after.size and np.abs(after).max() < QUIET, "still sounding after the panic"
    assert daemon.proc.poll() is None  # a panic is not a stop


def test_stopping_mid_answer_releases_every_note_before_the_audio_ends(synth_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon, player, ear = synth_daemon
    phrase_end = player.phrase(PHRASE)
    first = player.wait_for(lambda r: r.t > phrase_end and r.data[0] & 0xF0 == 0x90, 30)
    assert first is not None
    time.sleep(0.15)
    t_stop = daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0
    audio = ear.audio(t_stop - 0.1)
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > 0)
    assert loud.size, "no audio around the stop"
    ending = audio[: loud[-1] + 1]
    # The last 20 ms before the synth went away are the end of a release, not a cut note.
    tail = ending[-round(0.02 * ear.rate) :]
    assert np.abs(tail).max() < QUIET * 3, np.abs(tail).max()
    assert rms(audio[: round(0.1 * ear.rate)]) > 10 * rms(tail)
