"""An ear on JACK audio ports, in its own process, dating every block on
``time.perf_counter`` (the clock the ``Player`` dates MIDI with; CLOCK_MONOTONIC, the same
in every process) as its process callback runs. JACK's own frame clock is no use for that:
the dummy driver's cycles fall behind real time on a busy machine.

Its own process, because its process callback is Python, and libjack shared with
python-rtmidi in one process was fragile: on a ``--sync`` server every cycle waited for the
test's GIL, which rtmidi holds while it waits for the server (35 s to open a Player), and
closing the clients segfaulted the test run now and then (seen twice in CI).

The child appends each block to a file (float64 time, uint32 frames, then the frames as
float32 pairs); the test reads it when it asks. ``python -m tests.sound.jackcapture CLIENT
FILE SOURCE...`` is the child.
"""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HEADER = struct.Struct("<dI")


class Capture:
    def __init__(self, client: str, sources: Sequence[str], folder: Path) -> None:
        self.path = folder / f"{client}.raw"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sound.jackcapture", client, str(self.path), *sources],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            self.proc.kill()
            raise RuntimeError(f"the ear did not start: {line} {self.proc.stderr.read()[-800:]}")  # type: ignore[union-attr]
        self.rate = int(line[1])
        self._offset = 0
        self._blocks: list[tuple[float, np.ndarray]] = []

    def _read(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        at = 0
        while at + HEADER.size <= len(data):
            t, frames = HEADER.unpack_from(data, at)
            end = at + HEADER.size + frames * 8
            if end > len(data):
                break  # the rest of this block is still being written
            block = np.frombuffer(data, "<f4", frames * 2, at + HEADER.size)
            self._blocks.append((t, block.reshape(frames, 2).astype(np.float64)))
            at = end
        self._offset += at

    def blocks(self, t0: float = 0.0, t1: float = float("inf")) -> list[tuple[float, np.ndarray]]:
        """``(time, samples (frames, 2))`` of the blocks heard between ``t0`` and ``t1``."""
        time.sleep(0.03)  # what the child heard up to now is on disk (it writes every 10 ms)
        self._read()
        return [(t, b) for t, b in self._blocks if t0 <= t < t1]

    def audio(self, t0: float = 0.0, t1: float = float("inf")) -> np.ndarray:
        blocks = self.blocks(t0, t1)
        return np.concatenate([b for _, b in blocks]) if blocks else np.zeros((0, 2))

    def onset(self, t0: float = 0.0, threshold: float = 1e-3) -> float | None:
        """When the first sample above ``threshold`` after ``t0`` was heard."""
        for t, b in self.blocks(t0):
            loud = np.abs(b).max(axis=1) > threshold
            if loud.any():
                return t + int(np.argmax(loud)) / self.rate
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _main(client_name: str, path: str, sources: list[str]) -> None:
    import jack

    client = jack.Client(client_name, no_start_server=True)
    ports = [client.inports.register(f"in_{i}") for i in range(2)]
    pending: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()

    @client.set_process_callback
    def process(frames: int) -> None:  # JACK's thread: no file I/O here
        t = time.perf_counter()
        block = np.stack([p.get_array() for p in ports], axis=1).astype("<f4")
        with lock:
            pending.append(HEADER.pack(t, frames) + block.tobytes())

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(path, "wb") as out:
        client.activate()
        for src, port in zip(sources, ports):
            client.connect(src, port)
        time.sleep(0.05)  # JACK applies connections a cycle or two later
        print("ready", client.samplerate, flush=True)
        while not stop.wait(0.01):
            with lock:
                chunk, pending[:] = b"".join(pending), []
            out.write(chunk)
            out.flush()
        client.deactivate()
        client.close()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2], sys.argv[3:])
