"""Switching models from the studio: the page's model menu over the real server inside a
real daemon over JACK (dummy driver), a second JACK client the keyboard."""

from __future__ import annotations

import signal
import time

import pytest

from tests.live.conftest import SILENCE
from tests.studio.conftest import WEB, Page, studio_url

pytest.importorskip("torch")


@pytest.mark.jack
def test_the_page_switches_models_and_a_bad_one_changes_nothing(models, jack_server) -> None:  # type: ignore[no-untyped-def]
    from antiphon.live.harness import DaemonProcess, Player

    name = "antiphon-models"
    daemon = DaemonProcess(
        ["--model", str(models / "tiny.onnx"), "--silence-ms", str(SILENCE * 1000),
         "--seed", "3", *WEB],
        name=name,
    )  # fmt: skip
    player = Player(daemon_name=name, client=name + "-kbd")
    page = None
    try:
        page = Page(studio_url(daemon.ready_line))
        assert page.hello["models"] == ["broken.onnx", "midinet.onnx", "tiny.onnx"]
        assert (page.hello["model"], page.hello["family"]) == ("tiny.onnx", "transformer")

        # Not a model, not in the folder, a path out of it: one error each, nothing changes.
        for bad, says in (
            ("broken.onnx", "not a loadable ONNX model"),
            ("nope.onnx", "no model 'nope.onnx'"),
            ("../tiny.onnx", "no model '../tiny.onnx'"),
        ):
            t0 = time.perf_counter()
            page.send(type="model", name=bad)
            err = page.wait_for(lambda m: m["type"] == "error", 20, t0)
            assert err["request"] == "model" and says in err["message"], err
        assert not page.of("model")
        t_off = player.phrase([60, 64, 67, 72])
        assert player.wait_for(lambda r: r.t > t_off and r.data[0] & 0xF0 == 0x90, 15)

        # Switch while the old model may still be answering: its notes are released, and
        # the next phrase is answered by the new one.
        t0 = time.perf_counter()
        page.send(type="model", name="midinet.onnx")
        switched = page.wait_for(lambda m: m["type"] == "model", 30, t0)
        assert (switched["model"], switched["family"]) == ("midinet.onnx", "midinet")
        assert player.hanging() == {}
        second = Page(studio_url(daemon.ready_line))  # a page opened now shows the new one
        try:
            assert (second.hello["model"], second.hello["family"]) == ("midinet.onnx", "midinet")
        finally:
            second.close()
        t_off = player.phrase([62, 65, 69, 74, 69, 65])
        answer = page.wait_for(lambda m: m["type"] == "answer", 20, t_off)["row"]
        assert answer["first_note_sent"] is not None, answer
        assert player.wait_for(lambda r: r.t > t_off and r.data[0] & 0xF0 == 0x90, 5)

        # And back.
        t0 = time.perf_counter()
        page.send(type="model", name="tiny.onnx")
        assert page.wait_for(lambda m: m["type"] == "model", 30, t0)["family"] == "transformer"
        t_off = player.phrase([60, 62, 64, 65])
        assert player.wait_for(lambda r: r.t > t_off and r.data[0] & 0xF0 == 0x90, 15)
        daemon.signal(signal.SIGINT)
        assert daemon.wait(10) == 0
        time.sleep(0.1)
        assert player.hanging() == {}
        assert not [line for line in daemon.stderr_lines if "Traceback" in line]
    finally:
        if page is not None:
            page.close()
        daemon.kill()
        player.close()


def test_a_models_folder_that_is_not_there_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    missing = tmp_path / "none"
    done = subprocess.run(
        [sys.executable, "-m", "antiphon", "live", "--web", "--models", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"antiphon: error: --models {missing}: no such folder"
    ]
