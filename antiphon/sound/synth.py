"""``antiphon live --synth``: FluidSynth in-process, playing what antiphon sends (and, with
``--synth-input``, what the player plays) through the platform's audio driver.

``send`` never blocks the caller (the note scheduler's thread, the port's reader): it puts
the message on a queue, and the synth's own thread hands it to FluidSynth, whose audio driver
renders on a thread of its own. The player's notes sound on a channel of their own
(``player_channel``), so antiphon's All Notes Off does not cut the player's held keys and
the player's pedal does not hold antiphon's notes.

The audio driver is ``--audio-driver`` when given, else the first that opens of the
platform's list (Linux: JACK when a server runs, never starting one; then PipeWire,
PulseAudio, ALSA). On JACK the synth's outputs are connected to the system's playback ports.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from antiphon.sound.fluid import Fluid, SynthError, available_drivers, load
from antiphon.sound.soundfont import find_soundfont

PLATFORM_DRIVERS = {
    "linux": ("jack", "pipewire", "pulseaudio", "alsa"),
    "darwin": ("coreaudio", "portaudio", "sdl2"),
    "win32": ("wasapi", "dsound", "waveout", "sdl2"),
}
SAMPLE_RATE = 48000  # JACK's and PipeWire's usual rate (FluidSynth follows JACK's own)
GAIN = 0.5
# At shutdown the releases sound until no voice is left (at most this long), then the
# reverb's own tail for REVERB_TAIL, so the audio ends as a note does, not with a click.
RELEASE_MAX = 1.5
REVERB_TAIL = 0.2
DRUMS = 9


def driver_order(platform: str | None = None) -> tuple[str, ...]:
    platform = platform or sys.platform
    key = "win32" if platform.startswith("win") else platform
    return PLATFORM_DRIVERS.get(key, PLATFORM_DRIVERS["linux"])


@dataclass(frozen=True)
class SynthOptions:
    soundfont: str | None = None
    audio_driver: str | None = None  # None: the platform's first that opens
    client: str = "antiphon"  # JACK client name: CLIENT-synth
    gain: float = GAIN


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """libjack and ALSA print their failures straight to fd 2; what failed is said in the
    error (from FluidSynth's own log) instead."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


@contextlib.contextmanager
def _no_jack_autostart() -> Iterator[None]:
    """libjack starts a server when none runs unless told not to: a synth must never start
    one (it would take the sound card from everything else)."""
    old = os.environ.get("JACK_NO_START_SERVER")
    os.environ["JACK_NO_START_SERVER"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("JACK_NO_START_SERVER", None)
        else:
            os.environ["JACK_NO_START_SERVER"] = old


def _jack_options(client: str) -> dict[str, str | int | float]:
    return {"audio.jack.id": f"{client}-synth", "audio.jack.autoconnect": 1}


class LiveSynth:
    """FluidSynth on an audio driver, fed from any thread through ``send``."""

    def __init__(
        self,
        options: SynthOptions | None = None,
        *,
        player_channel: int = 15,
        platform: str | None = None,
    ) -> None:
        options = options or SynthOptions()
        load()  # FluidSynth missing: said before the SoundFont search
        font = find_soundfont(options.soundfont)
        self.player_channel = player_channel
        self.fluid = Fluid(font, sample_rate=SAMPLE_RATE, gain=options.gain)
        try:
            self.driver = self._open_driver(options, platform)
        except BaseException:
            self.fluid.close()
            raise
        self.sent = 0  # messages handed to FluidSynth (read by tests)
        self._queue: queue.SimpleQueue[tuple[str, list[int]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="antiphon-synth", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def soundfont(self) -> Path:
        return self.fluid.soundfont

    def _open_driver(self, options: SynthOptions, platform: str | None) -> str:
        built = available_drivers()
        if options.audio_driver:
            wanted = [options.audio_driver]
            if options.audio_driver not in built:
                raise SynthError(
                    f"--audio-driver {options.audio_driver}: this FluidSynth has no such driver; "
                    f"it has {', '.join(built)}"
                )
        else:
            wanted = [d for d in driver_order(platform) if d in built]
        failures = []
        for driver in wanted:
            extra = _jack_options(options.client) if driver == "jack" else {}
            try:
                with _no_jack_autostart(), _quiet_stderr():
                    self.fluid.start(driver, extra)
                return driver
            except SynthError as exc:
                failures.append(str(exc))
        tried = "; ".join(failures) or f"none of {', '.join(driver_order(platform))} is built in"
        hint = "start JACK or PulseAudio/PipeWire, or choose one with --audio-driver"
        raise SynthError(f"--synth: no audio output opened ({tried}); {hint}")

    # -- any thread ------------------------------------------------------------------------
    def send(self, data: Sequence[int]) -> None:
        """antiphon's message (played on its own channel); returns at once."""
        self._queue.put(("out", list(data)))

    def send_player(self, data: Sequence[int]) -> None:
        """The player's message (played on ``player_channel``); returns at once."""
        if data and 0x80 <= data[0] < 0xF0:
            self._queue.put(("player", list(data)))

    def release_all(self) -> None:
        """Pedal up and All Notes Off on every channel, the player's included (a panic)."""
        self._queue.put(("release", []))

    def close(self, tail: float = RELEASE_MAX, wait: Callable[[float], None] = time.sleep) -> None:
        """Release everything, let the releases sound (``tail`` seconds at most), then stop."""
        if self._closed:
            return
        self._closed = True
        self.release_all()
        self._queue.put(None)
        self._thread.join(timeout=2.0)
        waited = 0.0
        while tail > 0 and waited < tail and self.fluid.active_voices() > 0:
            wait(0.01)
            waited += 0.01
        if tail > 0:
            wait(REVERB_TAIL)
        self.fluid.close()

    # -- the synth's thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, data = item
            if kind == "release":
                self.fluid.release_all()
            elif kind == "player" and data[0] & 0x0F != DRUMS:  # drum pads stay drums
                self.fluid.send([(data[0] & 0xF0) | self.player_channel, *data[1:]])
            else:
                self.fluid.send(data)
            self.sent += 1


def player_channel_for(output_channel: int) -> int:
    """The synth channel (0-15) for the player's notes: the last one that is neither
    antiphon's output channel nor the drums."""
    return next(ch for ch in (15, 14, 13) if ch not in (output_channel, DRUMS))
