"""The player of ``test_jack_server_gone``, in its own process: its JACK clients are on a
server the test kills or stops, and libjack clients left on such a server in the test
process made later clients there segfault. Plays a phrase into ``NAME:in`` and prints
``answered`` once the answer's first note is heard (or ``silent``).

``python -m tests.live.gone_player NAME``: then leaves without closing anything (the test
kills the server next).

``python -m tests.live.gone_player NAME --stall``: then waits for a line on stdin (the test
has stopped the server mid-answer and let it go on), lets the rest of the answer play out,
and prints ``hanging N`` (notes of the stalled answer still on) and ``again S`` (seconds
from the next phrase's end to its answer's first note, or ``again none``)."""

from __future__ import annotations

import os
import sys
import time


def main(name: str, stall: bool) -> None:
    from antiphon.live.harness import Player

    player = Player(daemon_name=name, client=name + "-kbd")
    end = player.phrase([60, 64, 67, 72, 67, 64])
    first = player.wait_for(lambda r: r.t > end and r.data[0] & 0xF0 == 0x90, 30)
    print("answered" if first is not None else "silent", flush=True)
    if not stall:
        os._exit(0)  # mid-answer: the test kills the server next
    sys.stdin.readline()
    time.sleep(3.0)  # the rest of the answer (--max-response 2) plays out, or is released
    print(f"hanging {len(player.hanging())}", flush=True)
    end = player.phrase([62, 65, 69, 74])
    again = player.wait_for(lambda r: r.t > end and r.data[0] & 0xF0 == 0x90, 10)
    print("again none" if again is None else f"again {again.t - end:.3f}", flush=True)
    player.close()


if __name__ == "__main__":
    main(sys.argv[1], "--stall" in sys.argv[2:])
