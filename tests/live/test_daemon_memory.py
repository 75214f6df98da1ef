"""The daemon with in-memory ports: its threads and the bundled model are real, the ports
are not, so what it sent and what it wrote to ``--stats`` can be checked message by message.
(The same behaviour over real JACK ports is in test_daemon_jack.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

from antiphon.live.daemon import Daemon, DaemonConfig
from antiphon.live.policy import PolicyConfig
from antiphon.live.ports import MemoryInput, MemoryOutput
from antiphon.live.sampling import Sampling

SILENCE = 0.15


def _daemon(tmp_path: Path) -> tuple[Daemon, list[MemoryInput], MemoryOutput]:
    out = MemoryOutput()
    inputs: list[MemoryInput] = []

    def open_input(on_message):  # type: ignore[no-untyped-def]
        inputs.append(MemoryInput(on_message))
        return inputs[-1]

    config = DaemonConfig(
        policy=PolicyConfig(silence=SILENCE, min_response=0.5, max_response=1.0),
        sampling=Sampling(seed=1),
        stats=str(tmp_path / "stats.jsonl"),
    )
    daemon = Daemon(config, open_input=open_input, open_output=lambda: out)
    daemon.start()
    return daemon, inputs, out


def _phrase(port: MemoryInput, pitches: list[int]) -> float:
    for p in pitches:
        port.feed([0x90, p, 90])
        time.sleep(0.05)
        port.feed([0x80, p, 0])
        time.sleep(0.01)
    return time.perf_counter()


def _first_on_after(out: MemoryOutput, t: float, timeout: float = 3.0) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        ons = [s for s, m in list(out.sent) if s > t and m[0] & 0xF0 == 0x90 and m[2] > 0]
        if ons:
            return ons[0]
        time.sleep(0.005)
    return None


def test_stats_credit_each_answer_with_its_own_first_note(tmp_path: Path) -> None:
    daemon, (port,), out = _daemon(tmp_path)
    try:
        heard = []
        for pitches in ([60, 62, 64], [67, 65, 64, 62], [72, 71]):
            t_off = _phrase(port, pitches)
            first = _first_on_after(out, t_off)
            assert first is not None, "no answer"
            heard.append(first)
            time.sleep(0.3)  # the next phrase barges into this answer
    finally:
        daemon.stop_event.set()
        daemon.shutdown()
    rows = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    sounded = [r for r in rows if r["first_note_sent"] is not None]
    # One row per answer that sounded, each credited with its own first note: the times the
    # output port saw, not an earlier answer's note nor a later one.
    sent = sorted(r["first_note_sent"] for r in sounded)
    assert len(sent) == len(heard)
    assert all(abs(a - b) < 0.002 for a, b in zip(sent, heard))
    assert all(0 <= r["latency_ms"] < 1000 * SILENCE for r in sounded)
    assert not [r for r in rows if r["cut"] and r["first_note_sent"] is None]
