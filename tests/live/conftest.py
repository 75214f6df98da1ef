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

import pytest

JACKD_ARGS = ["--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"]
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


@pytest.fixture(scope="session")
def jack_server() -> Iterator[None]:
    jackd = shutil.which("jackd")
    if jackd is None:
        pytest.skip("jackd is not installed (Debian/Ubuntu: apt install jackd2)")
    if jack_running():
        yield
        return
    args = [jackd]
    name = os.environ.get("JACK_DEFAULT_SERVER")
    if name:
        args += ["-n", name]
    # A file, not a pipe: nobody reads jackd's log during the session, and a full pipe
    # would block the server.
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(args + JACKD_ARGS, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not jack_running():
                if proc.poll() is not None:
                    log.seek(0)
                    tail = log.read().strip()[-500:]
                    pytest.fail(f"jackd exited with {proc.returncode}: {tail}")
                if time.monotonic() > deadline:
                    pytest.fail(f"jackd did not accept clients within {START_TIMEOUT} s")
                time.sleep(0.05)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
    daemon = DaemonProcess(
        ["--model", str(trained_onnx), "--silence-ms", str(SILENCE * 1000), "--seed", "3", *extra],
        name=name,
    )
    player = Player(daemon_name=name, client=name + "-kbd")
    try:
        yield daemon, player
    finally:
        daemon.kill()
        player.close()
