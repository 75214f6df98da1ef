"""``antiphon render``: a MIDI file to a WAV file through a General MIDI SoundFont, offline.

The file's messages are played into FluidSynth in time order (every track merged, tempo
changes honoured, as mido times them) and the audio between two messages is rendered on the
spot, so a note sounds where the file puts it: silence before the first note is the file's
own, and the tail is the last notes' release (and reverb) rendered until it has died away.
Notes still held at the end of the file are released there.

Rendering goes to a temporary file of float samples first; the WAV (16-bit stereo) is then
written from it in one atomic write, scaled down only if it would otherwise clip, so an hour
of music costs disk, not memory.
"""

from __future__ import annotations

import os
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from antiphon.atomic import atomic_file
from antiphon.errors import UserError
from antiphon.models.midi.notes import MidiFileError, read_midi_file
from antiphon.sound.fluid import Fluid
from antiphon.sound.soundfont import find_soundfont

MAX_SECONDS = 3 * 3600.0  # longer is a corrupt delta time, not music
TAIL_MAX_SECONDS = 8.0  # the release and reverb after the last message, at most
TAIL_SILENT = 10 ** (-70 / 20)  # a tail block this quiet (and no voice left) ends the file
FADE_SECONDS = 0.005  # a tail cut at TAIL_MAX_SECONDS ends without a click
CEILING = 10 ** (-1 / 20)  # peaks above -1 dBFS are scaled down to it
BLOCK = 4096
GAIN = 0.8  # FluidSynth's default 0.2 is quiet; a file that would clip is scaled down


@dataclass(frozen=True)
class RenderResult:
    path: Path
    soundfont: Path
    sample_rate: int
    frames: int
    notes: int
    first_note: float | None  # seconds from the start of the file
    peak: float  # of the written file, 0-1 of full scale
    rms: float
    scaled: float  # the gain applied to avoid clipping (1.0: none)

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def check_sample_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 192000:
        raise UserError(f"sample rate {sample_rate!r}: must be 8000-192000 Hz")
    return sample_rate


def timed_messages(path: Path) -> list[tuple[float, list[int]]]:
    """``(seconds, raw bytes)`` of every channel message, tracks merged, tempo honoured."""
    mid = read_midi_file(path)
    try:
        length = mid.length
    except (ValueError, TypeError) as exc:  # mido refuses type-2 files' combined length
        raise MidiFileError(f"{path}: cannot be played as one piece ({exc})") from None
    if length > MAX_SECONDS:
        raise MidiFileError(
            f"{path}: it lasts {length / 3600:.1f} hours, over the {MAX_SECONDS / 3600:.0f} "
            "antiphon renders (a corrupt delta time?)"
        )
    out: list[tuple[float, list[int]]] = []
    t = 0.0
    try:
        played = list(mid)
    except (ValueError, TypeError) as exc:
        raise MidiFileError(f"{path}: cannot be played as one piece ({exc})") from None
    for msg in played:
        t += msg.time
        if not msg.is_meta and msg.type != "sysex":
            out.append((t, msg.bytes()))
    return out


def render_midi(
    midi_path: str | os.PathLike[str],
    wav_path: str | os.PathLike[str],
    soundfont: str | os.PathLike[str] | None = None,
    sample_rate: int = 44100,
) -> RenderResult:
    """Render ``midi_path`` to ``wav_path`` (16-bit stereo WAV, written atomically)."""
    midi_path, wav_path = Path(midi_path), Path(wav_path)
    check_sample_rate(sample_rate)
    messages = timed_messages(midi_path)  # a bad file fails before FluidSynth loads
    notes = sum(1 for _, m in messages if m[0] & 0xF0 == 0x90 and m[2] > 0)
    if not notes:
        raise MidiFileError(f"{midi_path}: the MIDI file holds no notes to render")
    font = find_soundfont(soundfont)
    first_note = next(t for t, m in messages if m[0] & 0xF0 == 0x90 and m[2] > 0)
    with Fluid(font, sample_rate=sample_rate, gain=GAIN) as synth, tempfile.TemporaryFile() as raw:
        frames, peak = _render_raw(synth, messages, sample_rate, raw)
        scale = min(1.0, CEILING / peak) if peak > 0 else 1.0
        raw.seek(0)
        rms = _write_wav(raw, frames, sample_rate, scale, wav_path)
    return RenderResult(
        path=wav_path,
        soundfont=font,
        sample_rate=sample_rate,
        frames=frames,
        notes=notes,
        first_note=first_note,
        peak=min(peak * scale, 1.0),
        rms=rms,
        scaled=scale,
    )


def _render_raw(
    synth: Fluid, messages: list[tuple[float, list[int]]], rate: int, raw
) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Float32 frames into ``raw``; returns (frames, peak)."""
    done = 0
    peak = 0.0

    def advance(frames: int) -> np.ndarray | None:
        nonlocal done, peak
        block = None
        while frames > 0:
            n = min(frames, BLOCK)
            block = synth.render(n)
            raw.write(block.tobytes())
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            done += n
            frames -= n
        return block

    for t, msg in messages:
        advance(round(t * rate) - done)
        synth.send(msg)
    synth.release_all()  # what the file leaves held ends with it
    limit = done + round(TAIL_MAX_SECONDS * rate)
    tail_block = rate // 20
    while done < limit:
        block = advance(min(tail_block, limit - done))
        quiet = block is not None and float(np.abs(block).max(initial=0.0)) < TAIL_SILENT
        if quiet and synth.active_voices() == 0:
            break
    else:
        _fade_out(raw, done, rate)
    return done, peak


def _fade_out(raw, frames: int, rate: int) -> None:  # type: ignore[no-untyped-def]
    n = min(frames, round(FADE_SECONDS * rate))
    raw.seek((frames - n) * 8)
    block = np.frombuffer(raw.read(n * 8), dtype=np.float32).reshape(n, 2).copy()
    block *= np.linspace(1.0, 0.0, n, dtype=np.float32)[:, None]
    raw.seek((frames - n) * 8)
    raw.write(block.tobytes())


def _write_wav(raw, frames: int, rate: int, scale: float, path: Path) -> float:  # type: ignore[no-untyped-def]
    """The float frames in ``raw`` as a 16-bit WAV at ``path``; returns the RMS (0-1)."""
    square = 0.0
    with atomic_file(path, what="WAV file") as f, wave.open(f, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        left = frames
        while left > 0:
            n = min(left, 16 * BLOCK)
            block = np.frombuffer(raw.read(n * 8), dtype=np.float32) * scale
            pcm = np.clip(np.round(block * 32767.0), -32768, 32767).astype("<i2")
            square += float(np.square(pcm.astype(np.float64) / 32768.0).sum())
            w.writeframes(pcm.tobytes())
            left -= n
    return float(np.sqrt(square / max(1, 2 * frames)))
