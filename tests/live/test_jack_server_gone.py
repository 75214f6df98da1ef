"""The JACK server dies under a playing daemon (killed, crashed, restarted by a session
manager): the daemon says so in one line and exits, instead of freezing. A server that only
stalls (stopped, swapped out) and comes back leaves no note hanging and the daemon playing.

rtmidi's JACK output spins, holding the GIL, while its ring is full, and only the server's
cycles empty it: a daemon whose server died froze for good at its next few thousand
messages (its keep-alive sends one every 10-50 ms), SIGTERM included, at 100 % CPU. Real
processes on a private server (the session's server must outlive this test), the player
among them: no client of this process may be left on a server that died."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.live.conftest import start_jackd, stop_jackd

pytestmark = pytest.mark.jack
NAME = "antiphon-test-gone"


@pytest.fixture
def own_server(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    # One name, always: a killed server keeps its slot in JACK's registry (8 slots in all,
    # then no server starts on the machine) until a server of its name starts again.
    monkeypatch.setenv("JACK_DEFAULT_SERVER", NAME)  # this process's clients and the daemon's
    with open(tmp_path / "jackd.log", "w+") as log:
        proc = start_jackd(NAME, log)
        yield proc
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop_jackd(start_jackd(NAME, log))  # takes the killed server's slot back, cleanly


def test_a_server_that_dies_mid_answer_ends_the_daemon_in_one_line(own_server) -> None:
    from antiphon.live.harness import DaemonProcess

    daemon = DaemonProcess(["--silence-ms", "300", "--seed", "3"], name="antiphon-gone")
    try:
        played = subprocess.run(
            [sys.executable, "-m", "tests.live.gone_player", "antiphon-gone"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert played.stdout.strip() == "answered", played.stdout + played.stderr[-2000:]
        own_server.kill()  # mid-answer: the daemon is sending
        own_server.wait()
        # It notices (no cycle for SERVER_GONE_SECONDS), releases, and exits by itself.
        status = daemon.proc.wait(60)
    finally:
        daemon.kill()
    err = "\n".join(daemon.stderr_lines)
    assert status == 1, err[-2000:]
    assert "the JACK server has run no cycle" in err, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


def test_a_server_that_stalls_mid_answer_and_resumes_leaves_nothing_hanging(own_server) -> None:
    """Refused sends during the stall are owed note-offs, sent first when cycles resume."""
    from antiphon.live.harness import DaemonProcess

    name = "antiphon-stall"
    args = ["--silence-ms", "300", "--seed", "3", "--max-response", "2"]
    daemon = DaemonProcess(args, name=name)
    player = None
    try:
        player = subprocess.Popen(
            [sys.executable, "-m", "tests.live.gone_player", name, "--stall"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert player.stdout is not None and player.stdin is not None
        assert player.stdout.readline().strip() == "answered", "no answer before the stall"
        own_server.send_signal(signal.SIGSTOP)  # mid-answer: the daemon is sending
        time.sleep(3.0)  # well under the daemon's 10 s for a server gone
        own_server.send_signal(signal.SIGCONT)
        player.stdin.write("go\n")
        player.stdin.flush()
        out, err_player = player.communicate(timeout=60)
        lines = dict(line.split(" ", 1) for line in out.split("\n") if " " in line)
        assert lines.get("hanging") == "0", out + err_player[-2000:]
        assert lines.get("again", "none") != "none", "the daemon stopped answering after the stall"
        assert float(lines["again"]) < 1.0, f"the next answer came {lines['again']} s late"
        assert player.returncode == 0, err_player[-2000:]
    finally:
        if player is not None and player.poll() is None:
            player.kill()
            player.wait()
        status = daemon.kill()
    err = "\n".join(daemon.stderr_lines)
    assert status == 0 and "Traceback" not in err, err[-2000:]
