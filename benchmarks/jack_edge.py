"""How well the daemon dates its sends against what a listener hears (``JackCycles.heard``).

    python benchmarks/jack_edge.py [--sends 4000] [--load 2] [--seed 1] [--json FILE]

Starts its own ``jackd -R -d dummy -p 64``, and sends note-ons at random moments (3-8 ms
apart, so at every phase of the cycle) from an rtmidi output as the daemon's, its thread
SCHED_FIFO where allowed, reading the frame counter and the clock around each send as the
daemon's scheduler does. A second client, the bench's ear, dates each arrival by the cycle
that brought it. Prints how many sends ``heard`` dated to one cycle and whether that was the
ear's, how many it called a cycle's edge (either of two cycles), their worst distance from the
ear, and where in the cycle the sending client's callback was seen to run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import threading
import time

from antiphon.live.harness import jack_server
from antiphon.live.jack import JackCycles
from antiphon.live.livebench import _Load
from antiphon.live.ports import RtMidiInput, RtMidiOutput


def measure(sends: int, load: int, seed: int) -> dict:
    now = time.perf_counter
    arrived: dict[tuple[int, int], float] = {}

    def on(data: list[int], t: float) -> None:
        if data[0] == 0x90:
            arrived[(data[1], data[2])] = t

    rows = []
    with jack_server(64, realtime=True) as server, _Load(load):
        out = RtMidiOutput(backend="jack", client="antiphon-edge")
        ear = RtMidiInput(
            on, backend="jack", client="antiphon-edge-ear", port="antiphon-edge-out:out",
            busy=lambda: True, keepalive=0.01,
        )  # fmt: skip
        cycles = JackCycles.open(now, name="antiphon-edge-cycles")
        stop = threading.Event()

        def observe() -> None:  # as the daemon's input reader does while playing
            while not stop.is_set():
                cycles.observe()
                time.sleep(0.0005)

        threading.Thread(target=observe, daemon=True).start()
        with contextlib.suppress(AttributeError, PermissionError):  # the daemon's note thread
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(70))
        time.sleep(0.3)
        rng = random.Random(seed)
        for i in range(sends):
            time.sleep(rng.uniform(0.003, 0.008))
            key = (20 + i % 100, 1 + (i // 100) % 127)
            before, sent = cycles.observe(), now()
            out.send([0x90, *key])
            returned, frame = now(), cycles.observe()
            out.send([0x80, key[0], 0])
            # dated at once, as the cycles it needs are still kept (about 10 s of them)
            time.sleep(0.004)
            began = cycles.began(frame)
            heard, error = cycles.heard(sent, frame, before, returned)
            rows.append((key, sent, began, before == frame, heard, error, returned))
        time.sleep(0.3)
        stop.set()
        ear.close()
        out.close()
    period = server["period_ms"] / 1e3 if server["period_ms"] else 64 / 48000
    exact = same = edge = 0
    worst_edge = 0.0
    carried_late, missed_early = [], []  # the callback's timing, seen from the sends
    wrong = []
    for key, sent, began, before_same, heard, error, returned in rows:
        t = arrived.get(key)
        if t is None or began is None:
            continue
        if error == 0:
            exact += 1
            same += abs(heard - t) < period / 2
            if abs(heard - t) >= period / 2:  # where the rule went wrong, for the next person
                wrong.append(
                    {
                        "sent_into_cycle_us": (sent - began) * 1e6,
                        "returned_into_cycle_us": (returned - began) * 1e6,
                        "cycle_began_before_the_send": before_same,
                        "heard_minus_listener_ms": (heard - t) * 1e3,
                    }
                )
        else:
            edge += 1
            worst_edge = max(worst_edge, abs(heard - t))
        if before_same:
            phase = (sent - began) * 1e6
            (carried_late if abs(t - began) < period / 2 else missed_early).append(phase)
    return {
        "sends": sends,
        "load": load,
        "dated_to_one_cycle": exact,
        "the_listeners_cycle": same,
        "at_a_cycles_edge": edge,
        "edge_worst_ms": worst_edge * 1e3,
        "period_ms": period * 1e3,
        "latest_send_its_cycle_carried_us": max(carried_late, default=None),
        "earliest_send_its_cycle_missed_us": min(missed_early, default=None),
        "wrong": wrong,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sends", type=int, default=4000)
    ap.add_argument("--load", type=int, default=0, help="CPU-bound processes beside it")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    result = measure(args.sends, args.load, args.seed)
    for k, v in result.items():
        print(f"{k:36s} {v if not isinstance(v, float) else round(v, 3)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
