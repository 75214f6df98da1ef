"""Dying by ``kill -9`` at a chosen moment of a write, for the kill tests.

``run_killed`` runs ``code`` in a fresh Python process in which ``antiphon.atomic``'s
``_before_replace`` hook (a no-op in antiphon itself, called with a complete temporary file
just before it is renamed over its target) sends SIGKILL to its own process at the ``at``-th
write of a target whose name ends with ``suffix`` — optionally tearing the temporary file in
half first, as a crash in the middle of writing it would. What the test then finds is what
a real crash at that moment leaves."""

from __future__ import annotations

import subprocess
import sys

ANTIPHON = "import runpy; runpy.run_module('antiphon', run_name='__main__')"  # the CLI

_WRAPPER = """
import os, signal, sys
import antiphon.atomic as atomic

suffix, at, tear, code = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "tear", sys.argv[4]
writes = 0

def die(tmp, target):
    global writes
    if target.name.endswith(suffix):
        writes += 1
        if writes == at:
            if tear:
                with open(tmp, "r+b") as f:
                    f.truncate(os.path.getsize(tmp) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

atomic._before_replace = die
sys.argv = ["antiphon", *sys.argv[5:]]
exec(code)
"""


def run_killed(
    suffix: str, at: int, code: str, *args: str, tear: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", _WRAPPER, suffix, str(at), "tear" if tear else "-", code]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)
