"""The JACK server dies under a playing daemon (killed, crashed, restarted by a session
manager): the daemon says so in one line and exits, instead of freezing.

rtmidi's JACK output spins, holding the GIL, while its ring is full, and only the server's
cycles empty it: a daemon whose server died froze for good at its next few thousand
messages (its keep-alive sends one every 10-50 ms), SIGTERM included, at 100 % CPU. Real
processes on a private server (the session's server must outlive this test), the player
among them: no client of this process may be left on a server that died."""

from __future__ import annotations

import subprocess
import sys

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
