"""One WAV per pitch of one General MIDI program, for the studio's sampler in the browser.

Each sample starts at its note-on (no leading silence), holds the note for ``seconds``, then
releases it and keeps the release until it has died away (at most ``RELEASE_SECONDS``): a
sampler plays the buffer from the start and fades it out at its own note-off. Samples are dry
(no reverb or chorus), so one note never carries the tail of the one rendered before it and
the page can add its own room.
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Iterable

import numpy as np

from antiphon.errors import UserError
from antiphon.sound.fluid import Fluid
from antiphon.sound.render import FADE_SECONDS, TAIL_SILENT, check_sample_rate
from antiphon.sound.soundfont import find_soundfont

RELEASE_SECONDS = 1.0
MAX_SECONDS = 30.0
DRUMS = 9  # channel 10
SILENT = 1e-5  # -100 dBFS: the lead-in a sample is trimmed of


def render_samples(
    soundfont: str | os.PathLike[str] | None,
    program: int,
    pitches: Iterable[int],
    velocity: int = 100,
    seconds: float = 2.0,
    sample_rate: int = 44100,
    *,
    drums: bool = False,
) -> dict[int, bytes]:
    """``{pitch: WAV bytes}`` (16-bit stereo) of GM ``program`` (0-127; with ``drums``, the
    drum kit of that number on channel 10); ``soundfont`` None: ``find_soundfont()``."""
    pitches = list(dict.fromkeys(pitches))
    _check(program, pitches, velocity, seconds)
    check_sample_rate(sample_rate)
    font = find_soundfont(soundfont)
    channel = DRUMS if drums else 0
    hold, release = round(seconds * sample_rate), round(RELEASE_SECONDS * sample_rate)
    out: dict[int, bytes] = {}
    with Fluid(font, sample_rate=sample_rate, reverb=False) as synth:
        synth.send([0xC0 | channel, program])
        _warm_up(synth, channel, pitches[0], velocity)
        for pitch in pitches:
            synth.send([0x90 | channel, pitch, velocity])
            audio = [synth.render(hold)]
            synth.send([0x80 | channel, pitch, 0])
            audio += _release(synth, release, sample_rate)
            synth.silence_all()
            # FluidSynth renders in blocks of 64 frames: the next note starts on a block's
            # first frame, as this one did, so each sample is the same whatever came before.
            done = sum(a.shape[0] for a in audio)
            synth.render(64 + (-done) % 64)
            out[pitch] = _wav(_from_the_first_sound(np.concatenate(audio)), sample_rate)
    return out


def _from_the_first_sound(audio: np.ndarray) -> np.ndarray:
    """Without the silence before the note sounds: some fonts' samples open with a few ms of
    it (TimGM6mb's piano: 6 ms), and the page's sampler must sound on the key press."""
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > SILENT)
    return audio[loud[0] :] if loud.size else audio


def _warm_up(synth: Fluid, channel: int, pitch: int, velocity: int) -> None:
    """A note played and dropped: FluidSynth's first note differs from every later one in its
    first block (a voice used for the first time), so without it a sample would depend on
    whether it was rendered first."""
    synth.send([0x90 | channel, pitch, velocity])
    synth.render(512)
    synth.silence_all()
    synth.render(64)


def _check(program: int, pitches: list[int], velocity: int, seconds: float) -> None:
    if not isinstance(program, int) or not 0 <= program <= 127:
        raise UserError(f"program {program!r}: must be 0-127 (General MIDI, 0 = piano)")
    bad = [p for p in pitches if not isinstance(p, int) or not 0 <= p <= 127]
    if bad or not pitches:
        raise UserError(f"pitches must be MIDI notes 0-127 (got {bad or 'none'})")
    if not isinstance(velocity, int) or not 1 <= velocity <= 127:
        raise UserError(f"velocity {velocity!r}: must be 1-127")
    if not 0 < seconds <= MAX_SECONDS:
        raise UserError(f"seconds {seconds!r}: must be more than 0 and at most {MAX_SECONDS:g}")


def _release(synth: Fluid, most: int, rate: int) -> list[np.ndarray]:
    step = rate // 100
    blocks: list[np.ndarray] = []
    left = most
    while left > 0:
        block = synth.render(min(step, left))
        blocks.append(block)
        left -= block.shape[0]
        if synth.active_voices() == 0 and float(np.abs(block).max(initial=0.0)) < TAIL_SILENT:
            return blocks
    if blocks:  # cut at RELEASE_SECONDS: end without a click
        tail = np.concatenate(blocks)
        n = min(tail.shape[0], round(FADE_SECONDS * rate))
        tail[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)[:, None]
        blocks = [tail]
    return blocks


def _wav(audio: np.ndarray, rate: int) -> bytes:
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()
