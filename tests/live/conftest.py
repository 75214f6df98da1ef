"""Fixtures for live tests: a JACK server (dummy driver) for real-port tests.

``jack_server`` guarantees a running server for the session: it uses one that is already
running, or starts ``jackd --no-realtime -d dummy`` and stops only that one afterwards.
Tests skip only when the ``jackd`` binary is missing.

It honours ``JACK_DEFAULT_SERVER``: ``JACK_DEFAULT_SERVER=antiphon-test pytest`` runs on a
private server (started with ``-n antiphon-test``) that no other session shares. A shared
server is fragile: a client killed mid-test can leave it slow for everyone.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import pytest

# --sync: the server waits for every client each cycle. In jackd2's default asynchronous
# mode a client that is late for a cycle (a loaded 2-core CI machine) never sees that
# cycle's MIDI: the test's listener then "heard" a note-on whose note-off came in the lost
# cycle, and failed a daemon that had sent both (test_midinet_live, 2 runs in 5 under load;
# 0 in 10 with --sync). The bench's server (live/harness.py) runs so for the same reason.
JACKD_ARGS = ["--sync", "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"]
START_TIMEOUT = 10.0  # seconds; the dummy driver is up in well under one


def jack_running() -> bool:
    """Whether a JACK server accepts clients (``jack_lsp`` when installed, else an
    rtmidi client); never starts one."""
    env = {**os.environ, "JACK_NO_START_SERVER": "1"}
    if shutil.which("jack_lsp"):
        done = subprocess.run(["jack_lsp"], env=env, capture_output=True, check=False)
        return done.returncode == 0
    from antiphon.live.ports import probe

    return probe("jack") is None


def start_jackd(name: str | None, log: IO[str]) -> subprocess.Popen:
    """``jackd`` (the dummy driver, ``JACKD_ARGS``) named ``name`` (None: the default
    server), once it accepts clients; its output goes to ``log`` (a file, not a pipe:
    nobody reads it while it runs, and a full pipe would block the server)."""
    jackd = shutil.which("jackd")
    if jackd is None:
        pytest.skip("jackd is not installed (Debian/Ubuntu: apt install jackd2)")
    args = [jackd, *(["-n", name] if name else []), *JACKD_ARGS]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while not jack_running():
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"jackd exited with {proc.returncode}: {log.read().strip()[-500:]}")
        if time.monotonic() > deadline:
            stop_jackd(proc)
            pytest.fail(f"jackd did not accept clients within {START_TIMEOUT} s")
        time.sleep(0.05)
    return proc


def stop_jackd(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def jack_server() -> Iterator[None]:
    if shutil.which("jackd") is not None and jack_running():
        yield
        return
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = start_jackd(os.environ.get("JACK_DEFAULT_SERVER"), log)
        try:
            yield
        finally:
            stop_jackd(proc)


SILENCE = 0.3  # the daemon's --silence-ms in the end-to-end tests, in seconds
_names = itertools.count()


@pytest.fixture
def live(jack_server, trained_onnx, request, tmp_path):  # type: ignore[no-untyped-def]
    """A daemon on the trained tiny model plus a player playing into it. Extra CLI
    arguments come from ``daemon_args`` markers (the module's, then the test's); an
    argument ``@name`` is a file of that name in the test's tmp_path."""
    from antiphon.live.harness import DaemonProcess, Player

    args = [a for m in reversed(list(request.node.iter_markers("daemon_args"))) for a in m.args]
    extra = [str(tmp_path / a[1:]) if a.startswith("@") else a for a in args]
    name = f"antiphon-t{next(_names)}"
    scratch = tmp_path / "daemon-tmp"  # its temporary files (the studio's takes) go here
    scratch.mkdir()
    daemon = DaemonProcess(
        ["--model", str(trained_onnx), "--silence-ms", str(SILENCE * 1000), "--seed", "3", *extra],
        name=name,
        env={"TMPDIR": str(scratch)},
    )
    try:  # a Player that cannot open must not leave the daemon running
        player = Player(daemon_name=name, client=name + "-kbd")
    except BaseException:
        daemon.kill()
        raise
    try:
        yield daemon, player
    finally:
        # The player first, while the daemon leaves the graph alone (antiphon.live.jack:
        # closing a client as the graph changes can crash libjack).
        player.close()
        status = daemon.kill()
    # A daemon this stopped shut down cleanly, whatever the test did with it: no traceback
    # on the way out (a studio's close once raised there and skipped the notes-off), and
    # nothing left in the temporary folder.
    if status is not None:
        trace = [line for line in daemon.stderr_lines if "Traceback" in line]
        assert status == 0 and not trace, (status, daemon.stderr_lines[-20:])
        # (onnxruntime keeps a session id file, .ses, there: its own, not ours)
        left = [p.name for p in scratch.iterdir() if p.name.startswith("antiphon")]
        assert not left, f"the daemon left temporary files behind: {left}"
