"""The player of ``test_jack_server_gone``, in its own process: its JACK clients are on a
server the test kills, and libjack clients left on a dead server in the test process made
later clients there segfault. Plays a phrase into ``NAME:in``, prints ``answered`` once
the answer's first note is heard (or ``silent``), and leaves without closing anything.

``python -m tests.live.gone_player NAME``"""

from __future__ import annotations

import os
import sys


def main(name: str) -> None:
    from antiphon.live.harness import Player

    player = Player(daemon_name=name, client=name + "-kbd")
    end = player.phrase([60, 64, 67, 72, 67, 64])
    first = player.wait_for(lambda r: r.t > end and r.data[0] & 0xF0 == 0x90, 30)
    print("answered" if first is not None else "silent", flush=True)
    os._exit(0)  # mid-answer: the test kills the server next


if __name__ == "__main__":
    main(sys.argv[1])
