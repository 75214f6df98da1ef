"""FluidSynth in-process: pyfluidsynth over the system's libfluidsynth, with clear errors.

One ``Fluid`` is one synthesizer with one SoundFont loaded. It takes raw MIDI bytes (what
antiphon's ports carry) and either renders float samples on request (offline, no driver) or
plays through an audio driver of FluidSynth's own (``start``). pyfluidsynth binds most of
the C API; the few calls it lacks (float output, pressure, logging, listing drivers) are
bound here through its own ``cfunc`` on the same library.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from antiphon.errors import UserError


class FluidSynthMissing(UserError):
    """pyfluidsynth or libfluidsynth is not installed: the message says what to install."""


class SynthError(UserError):
    """FluidSynth refused something (a SoundFont, an audio driver): one line saying which."""


PIP_HINT = "pip install 'antiphon[sound]'"


def library_hint(platform: str | None = None) -> str:
    platform = platform or sys.platform
    if platform == "darwin":
        return "brew install fluid-synth"
    if platform.startswith("win"):
        return "install FluidSynth 2 and put its bin folder on PATH (or C:\\tools\\fluidsynth\\bin)"
    return "sudo apt install libfluidsynth3 (Fedora: fluidsynth-libs; Arch: fluidsynth)"


_module: ModuleType | None = None
_bound: dict[str, Any] = {}
_load_lock = threading.Lock()

LOG_LEVELS = 5  # FLUID_PANIC .. FLUID_DBG
_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_OPTION_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p)


def load() -> ModuleType:
    """The pyfluidsynth module, its library loaded; ``FluidSynthMissing`` naming the package
    to install when either part is absent."""
    global _module
    with _load_lock:
        if _module is not None:
            return _module
        try:
            # pyfluidsynth prints where it found the library when CI is set: not our output.
            with contextlib.redirect_stdout(io.StringIO()):
                import fluidsynth
        except ModuleNotFoundError as exc:
            if exc.name != "fluidsynth":
                raise
            raise FluidSynthMissing(
                f"FluidSynth's Python binding (pyfluidsynth) is not installed: {PIP_HINT}"
            ) from None
        except (ImportError, OSError) as exc:
            raise FluidSynthMissing(
                f"the FluidSynth library is not installed ({exc}): {library_hint()}"
            ) from None
        if not hasattr(fluidsynth, "cfunc") or not hasattr(fluidsynth, "Synth"):
            raise FluidSynthMissing(
                f"the 'fluidsynth' module found is not pyfluidsynth ({fluidsynth.__file__}): "
                f"pip uninstall fluidsynth, then {PIP_HINT}"
            )
        _bind(fluidsynth)
        _module = fluidsynth
        return fluidsynth


def _bind(fl: ModuleType) -> None:
    c_int, c_void_p, c_float_p = ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)
    _bound["write_float"] = fl.cfunc(
        "fluid_synth_write_float",
        c_int,
        ("synth", c_void_p, 1),
        ("len", c_int, 1),
        ("lout", c_float_p, 1),
        ("loff", c_int, 1),
        ("lincr", c_int, 1),
        ("rout", c_float_p, 1),
        ("roff", c_int, 1),
        ("rincr", c_int, 1),
    )
    _bound["channel_pressure"] = fl.cfunc(
        "fluid_synth_channel_pressure",
        c_int,
        ("synth", c_void_p, 1),
        ("chan", c_int, 1),
        ("val", c_int, 1),
    )
    _bound["key_pressure"] = fl.cfunc(
        "fluid_synth_key_pressure",
        c_int,
        ("synth", c_void_p, 1),
        ("chan", c_int, 1),
        ("key", c_int, 1),
        ("val", c_int, 1),
    )
    _bound["pitch_bend"] = fl.cfunc(
        "fluid_synth_pitch_bend", c_int, ("synth", c_void_p, 1), ("chan", c_int, 1), ("v", c_int, 1)
    )
    _bound["set_log"] = fl.cfunc(
        "fluid_set_log_function",
        c_void_p,
        ("level", c_int, 1),
        ("fun", _LOG_FN, 1),
        ("data", c_void_p, 1),
    )
    _bound["foreach_option"] = fl.cfunc(
        "fluid_settings_foreach_option",
        None,
        ("settings", c_void_p, 1),
        ("name", ctypes.c_char_p, 1),
        ("data", c_void_p, 1),
        ("func", _OPTION_FN, 1),
    )
    missing = [name for name, f in _bound.items() if f is None]
    if missing:
        raise FluidSynthMissing(
            f"the FluidSynth library is too old (no {', '.join(missing)}): FluidSynth 2 is needed; "
            f"{library_hint()}"
        )


class _Log:
    """FluidSynth's log, kept in Python only while a call may explain its own failure (a
    driver that does not open, a SoundFont that does not load); silenced otherwise, so the
    audio thread never calls into Python."""

    _installed = threading.Lock()  # FluidSynth's log functions are process-wide

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._keep = _LOG_FN(self._add)  # referenced for as long as FluidSynth may call it

    def _add(self, level: int, message: bytes | None, data: object) -> None:
        if level <= 2 and message:  # panic, error, warning
            self.lines.append(message.decode("utf-8", "replace").strip())

    @contextlib.contextmanager
    def capture(self):  # type: ignore[no-untyped-def]
        with self._installed:
            self.lines = []
            for level in range(LOG_LEVELS):
                _bound["set_log"](level, self._keep, None)
            try:
                yield self.lines
            finally:
                silence()

    def reason(self) -> str:
        return "; ".join(dict.fromkeys(line for line in self.lines if line)) or "no reason given"


def silence() -> None:
    """Drop every FluidSynth log message (they would otherwise go to stderr)."""
    for level in range(LOG_LEVELS):
        _bound["set_log"](level, _LOG_FN(), None)


def available_drivers() -> list[str]:
    """The audio drivers this libfluidsynth was built with."""
    fl = load()
    settings = fl.new_fluid_settings()
    names: list[str] = []

    def add(data: object, name: bytes, option: bytes) -> None:
        names.append(option.decode())

    callback = _OPTION_FN(add)
    try:
        _bound["foreach_option"](settings, b"audio.driver", None, callback)
    finally:
        fl.delete_fluid_settings(settings)
    return names


class Fluid:
    """One FluidSynth synthesizer with ``soundfont`` loaded on every channel (channel 10:
    drums, as General MIDI says)."""

    def __init__(
        self,
        soundfont: Path,
        *,
        sample_rate: int = 44100,
        gain: float = 0.5,
        reverb: bool = True,
        settings: dict[str, str | int | float] | None = None,
    ) -> None:
        fl = load()
        self._log = _Log()
        self.soundfont = Path(soundfont)
        self.sample_rate = sample_rate
        self.driver: str | None = None
        self._audio_driver = None
        options: dict[str, str | int | float] = {
            "synth.reverb.active": int(reverb),
            "synth.chorus.active": int(reverb),
            **(settings or {}),
        }
        with self._log.capture():
            self.synth = fl.Synth(gain=gain, samplerate=sample_rate, channels=16, **options)
            self.sfid = self.synth.sfload(str(self.soundfont))
        if self.sfid < 0:
            reason = self._log.reason()
            self.synth.delete()
            raise SynthError(f"{self.soundfont}: FluidSynth cannot load this SoundFont ({reason})")
        for ch in range(16):
            self.synth.program_select(ch, self.sfid, 128 if ch == 9 else 0, 0)
        self._fl = fl
        self._ptr = self.synth.synth
        self._left = np.zeros(0, dtype=np.float32)
        self._right = np.zeros(0, dtype=np.float32)

    # -- MIDI in ---------------------------------------------------------------------------
    def send(self, data: Sequence[int]) -> None:
        """One raw channel message; anything else (sysex, clock) is ignored."""
        if not data:
            return
        status = data[0]
        kind, ch = status & 0xF0, status & 0x0F
        a = data[1] if len(data) > 1 else 0
        b = data[2] if len(data) > 2 else 0
        fl, synth = self._fl, self._ptr
        if kind == 0x90:
            fl.fluid_synth_noteon(synth, ch, a, b)  # velocity 0 is a note-off there too
        elif kind == 0x80:
            fl.fluid_synth_noteoff(synth, ch, a)
        elif kind == 0xB0:
            fl.fluid_synth_cc(synth, ch, a, b)
        elif kind == 0xC0:
            fl.fluid_synth_program_change(synth, ch, a)
        elif kind == 0xE0:
            _bound["pitch_bend"](synth, ch, a | (b << 7))
        elif kind == 0xD0:
            _bound["channel_pressure"](synth, ch, a)
        elif kind == 0xA0:
            _bound["key_pressure"](synth, ch, a, b)

    def release_all(self) -> None:
        """Pedal up and All Notes Off on every channel: notes end with their release."""
        for ch in range(16):
            self._fl.fluid_synth_cc(self._ptr, ch, 64, 0)
            self._fl.fluid_synth_all_notes_off(self._ptr, ch)

    def silence_all(self) -> None:
        """All Sound Off on every channel: nothing sounds from the next block on."""
        for ch in range(16):
            self._fl.fluid_synth_all_sounds_off(self._ptr, ch)

    def active_voices(self) -> int:
        return int(self._fl.fluid_synth_get_active_voice_count(self._ptr))

    # -- audio out: offline ----------------------------------------------------------------
    def render(self, frames: int) -> np.ndarray:
        """The next ``frames`` of audio, float32 ``(frames, 2)``."""
        out = np.empty((frames, 2), dtype=np.float32)
        if frames <= 0:
            return out
        if self._left.size < frames:
            self._left = np.empty(frames, dtype=np.float32)
            self._right = np.empty(frames, dtype=np.float32)
        ptr = ctypes.POINTER(ctypes.c_float)
        left, right = self._left.ctypes.data_as(ptr), self._right.ctypes.data_as(ptr)
        if _bound["write_float"](self._ptr, frames, left, 0, 1, right, 0, 1) != 0:
            raise SynthError("FluidSynth failed to render audio")
        out[:, 0] = self._left[:frames]
        out[:, 1] = self._right[:frames]
        return out

    # -- audio out: a driver ---------------------------------------------------------------
    def start(self, driver: str, options: dict[str, str | int | float] | None = None) -> None:
        """Play through FluidSynth's audio driver ``driver`` (its own thread); no MIDI
        driver is opened: MIDI comes only through ``send``."""
        self.synth.setting("audio.driver", driver)
        for key, value in (options or {}).items():
            self.synth.setting(key, value)
        with self._log.capture():
            handle = self._fl.new_fluid_audio_driver(self.synth.settings, self._ptr)
        if not handle:
            raise SynthError(f"audio driver {driver!r} did not open ({self._log.reason()})")
        self._audio_driver, self.driver = handle, driver

    def close(self) -> None:
        if self._audio_driver:
            self._fl.delete_fluid_audio_driver(self._audio_driver)
            self._audio_driver = None
        if self._ptr:
            self._fl.delete_fluid_synth(self._ptr)
            self._fl.delete_fluid_settings(self.synth.settings)
            self._ptr = None

    def __enter__(self) -> Fluid:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
