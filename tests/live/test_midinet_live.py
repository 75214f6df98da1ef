"""MidiNet in ``--mode accompany`` over real JACK ports: bars answer the player while the
player is still playing, and nothing is left hanging at exit."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def midinet_file(tmp_path_factory) -> Path:
    import torch

    from antiphon.models.notes_train import NOTE_GRID
    from antiphon.models.registry import family
    from tests.checkpoints import export_verified, save_checkpoint

    torch.manual_seed(0)
    g = family("midinet").build({"base": 8, "dense": 16, "cond_channels": 4, "noise": 8})
    folder = tmp_path_factory.mktemp("midinet-live")
    ckpt = save_checkpoint(folder / "ckpt.pt", "midinet", g, grid=NOTE_GRID.to_dict())
    return export_verified(ckpt, folder / "midinet.onnx")[0]


@pytest.mark.jack
def test_accompany_answers_bar_after_bar_while_the_player_plays(midinet_file, jack_server) -> None:
    from antiphon.live.harness import DaemonProcess, Player

    name = "antiphon-midinet-acc"
    daemon = DaemonProcess(
        ["--model", str(midinet_file), "--mode", "accompany", "--seed", "3", "--bpm", "240"],
        name=name,
    )
    player = Player(daemon_name=name, client=name + "-kbd")
    try:
        assert "midinet" in daemon.ready_line
        started = time.perf_counter()
        player.phrase([60, 64, 67, 72, 67, 64, 60, 64, 67, 72, 67, 64] * 2, note=0.1, gap=0.02)
        finished = time.perf_counter()
        during = [r for r in player.note_ons() if started < r.t < finished]
        assert during, "accompany played nothing while the player played"
        time.sleep(0.3)
        daemon.signal(signal.SIGINT)
        assert daemon.wait(5) == 0
        time.sleep(0.05)
        assert player.hanging() == {}
    finally:
        player.close()  # first: see antiphon.live.jack on closing as the graph changes
        daemon.kill()
