"""Runs ``antiphon continue`` (the CLI's own ``main``) on every MIDI file in a folder.

``python -m tests.live.fuzz_runner CASES RESULTS MODEL`` runs in its own process under an
address-space limit, gives each file a deadline, and writes one JSON line per file to RESULTS as
it goes (the name first, so a crash points at its file): exit code, stdout, stderr, a traceback
that escaped ``main``, seconds, what is wrong with the file written, and peak resident memory.
"""

from __future__ import annotations

import io
import json
import resource
import signal
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

DEADLINE_S = 10.0
MEMORY_LIMIT = 4 * 2**30  # address space: onnxruntime reserves far more than it touches


class Deadline(BaseException):
    """Not an ``Exception``: no ``except Exception`` on the way may turn a hang into an error."""


def _deadline(signum: int, frame: object) -> None:
    raise Deadline


def run_one(main, path: Path, out: Path, args: list[str]) -> dict:
    """``main`` (the CLI's) on one file, and what became of it."""
    stdout, stderr = io.StringIO(), io.StringIO()
    rc, escaped = None, None
    t0 = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            rc = main(["continue", str(path), "-o", str(out), *args])
    except Deadline:
        escaped = f"no answer within {DEADLINE_S} s"
    except BaseException:  # anything that escapes main is what we look for
        escaped = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - t0
    written = written_problem(out) if rc == 0 else None
    out.unlink(missing_ok=True)
    return {
        "rc": rc,
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
        "escaped": escaped,
        "seconds": seconds,
        "written": written,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def written_problem(out: Path) -> str:
    """What is wrong with a file ``continue`` wrote: "" when it reads back with every note ended."""
    from antiphon.models.midi.notes import MidiFileError, read_midi_file

    try:
        added = read_midi_file(out).tracks[-1]
    except MidiFileError as exc:
        return str(exc)
    sounding: dict[int, int] = {}
    for msg in added:
        if msg.type == "note_on" and msg.velocity > 0:
            sounding[msg.note] = sounding.get(msg.note, 0) + 1
        elif msg.type in ("note_on", "note_off") and sounding.get(msg.note):
            sounding[msg.note] -= 1
    hanging = sorted(p for p, n in sounding.items() if n)
    return f"notes {hanging} never end" if hanging else ""


def main(cases: Path, results: Path, model: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGALRM, _deadline)
    from antiphon.cli import main as cli

    out = results.parent / "out.mid"
    with results.open("w") as f:
        for i, path in enumerate(sorted(cases.iterdir())):
            f.write(json.dumps({"name": path.name}) + "\n")
            f.flush()
            length = ["--bars", "2"] if i % 5 == 0 else ["--seconds", "8"]
            args = [*length, "--seed", "0", "--model", model]
            f.write(json.dumps(run_one(cli, path, out, args)) + "\n")
            f.flush()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
