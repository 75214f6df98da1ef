"""``LiveSynth`` without a JACK capture: which driver, which channel, and the errors a user
sees from ``antiphon live --synth`` when FluidSynth, a SoundFont or an audio output is
missing (each run for real)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from antiphon.errors import UserError
from antiphon.live.harness import jack_running
from antiphon.sound.synth import LiveSynth, SynthOptions, driver_order, player_channel_for
from tests.sound.test_soundfont import WITHOUT


def test_each_platform_tries_its_own_drivers_first() -> None:
    assert driver_order("linux")[0] == "jack" and "pulseaudio" in driver_order("linux")
    assert driver_order("darwin")[0] == "coreaudio"
    assert driver_order("win32")[:2] == ("wasapi", "dsound")


def test_the_players_channel_is_never_antiphons_nor_the_drums() -> None:
    for out in range(16):
        ch = player_channel_for(out)
        assert ch not in (out, 9) and 0 <= ch <= 15


def test_an_unknown_audio_driver_lists_the_ones_there_are(soundfont: Path) -> None:
    with pytest.raises(UserError, match=r"no such driver; it has .*jack") as err:
        LiveSynth(SynthOptions(audio_driver="nonesuch"))
    assert "--audio-driver nonesuch" in str(err.value)


def test_jack_without_a_server_fails_clearly_and_starts_none(
    soundfont: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = f"antiphon-none-{os.getpid()}"
    monkeypatch.setenv("JACK_DEFAULT_SERVER", server)
    with pytest.raises(UserError, match="audio driver 'jack' did not open") as err:
        LiveSynth(SynthOptions(audio_driver="jack"))
    assert "--synth: no audio output opened" in str(err.value)
    assert "\n" not in str(err.value)
    assert not jack_running(server)  # libjack was told not to start one


LIVE = textwrap.dedent(
    """
    import sys
    from antiphon.cli import main
    sys.exit(main(["live", "--backend", "jack", "--name", sys.argv[1], *sys.argv[2:]]))
    """
)


def run_live(prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    name = f"antiphon-err{os.getpid()}"
    return subprocess.run(
        [sys.executable, "-c", prelude + LIVE, name, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("part", "hint"),
    [("library", "apt install libfluidsynth3"), ("binding", "pip install 'antiphon[sound]'")],
)
def test_live_synth_without_fluidsynth_is_one_line(part: str, hint: str) -> None:
    done = run_live(WITHOUT[part], "--synth")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and hint in lines[0], done.stderr


def test_live_synth_with_a_missing_soundfont_is_one_line(soundfont: Path, tmp_path: Path):
    missing = tmp_path / "none.sf2"
    done = run_live("", "--synth", "--soundfont", str(missing))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"antiphon: error: {missing}: no such SoundFont file"]


def test_synth_options_without_synth_are_refused() -> None:
    done = run_live("", "--synth-input")
    assert done.returncode == 2
    assert "go with --synth" in done.stderr


def test_the_daemons_output_gives_the_synth_each_message_before_the_port() -> None:
    """A note-off still reaches the synth when the port it is sent to has gone."""
    from antiphon.live.daemon import EchoOutput
    from antiphon.live.ports import MemoryOutput

    class Gone(MemoryOutput):
        def _send(self, msg: list[int]) -> None:
            raise OSError("the port has gone")

    class Synth:  # records what LiveSynth.send would queue
        def __init__(self) -> None:
            self.got: list[list[int]] = []

        def send(self, data: list[int]) -> None:
            self.got.append(list(data))

    synth, echoed = Synth(), []
    out = EchoOutput(MemoryOutput(), echoed.append, synth)  # type: ignore[arg-type]
    out.send([0x90, 60, 100])
    assert synth.got == [[0x90, 60, 100]] == echoed
    gone = EchoOutput(Gone(), echoed.append, synth)  # type: ignore[arg-type]
    with pytest.raises(OSError):
        gone.send([0x80, 60, 0])
    assert synth.got[-1] == [0x80, 60, 0]
