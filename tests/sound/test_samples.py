"""``render_samples``: the studio's sampler gets one real, pitched, immediate WAV per note."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from antiphon.errors import UserError
from antiphon.sound.samples import RELEASE_SECONDS, render_samples
from tests.sound.conftest import read_wav, rms


def fundamental(audio: np.ndarray, rate: int) -> float:
    """The strongest frequency between 50 Hz and 2 kHz of the first half second."""
    mono = audio[: rate // 2].mean(axis=1)
    mag = np.abs(np.fft.rfft(mono * np.hanning(len(mono)), n=8 * len(mono)))
    freqs = np.fft.rfftfreq(8 * len(mono), 1 / rate)
    band = (freqs > 50) & (freqs < 2000)
    return float(freqs[band][np.argmax(mag[band])])


def test_each_pitch_is_a_wav_that_sounds_at_once_at_its_pitch(soundfont: Path) -> None:
    samples = render_samples(soundfont, 0, [57, 69], velocity=100, seconds=1.0)
    assert sorted(samples) == [57, 69]
    for pitch, wav in samples.items():
        audio, rate = read_wav(wav)
        assert rate == 44100 and audio.shape[1] == 2
        assert 1.0 <= len(audio) / rate <= 1.0 + RELEASE_SECONDS + 0.01
        assert rms(audio[: rate // 2]) > 0.005
        onset = int(np.argmax(np.abs(audio).max(axis=1) > 1e-3)) / rate
        assert onset < 0.005  # no leading silence: the sampler starts it on the key
        expected = 440.0 * 2 ** ((pitch - 69) / 12)  # 220 and 440 Hz
        assert fundamental(audio, rate) == pytest.approx(expected, rel=0.03)


def test_programs_and_velocities_change_the_samples(soundfont: Path) -> None:
    piano = read_wav(render_samples(soundfont, 0, [60], seconds=0.5)[60])[0]
    organ = read_wav(render_samples(soundfont, 19, [60], seconds=0.5)[60])[0]
    soft = read_wav(render_samples(soundfont, 0, [60], velocity=30, seconds=0.5)[60])[0]
    n = min(len(piano), len(organ))
    assert not np.allclose(piano[:n], organ[:n], atol=1e-2)
    assert rms(soft) < rms(piano) / 2


def test_one_sample_carries_nothing_of_the_one_before(soundfont: Path) -> None:
    alone = render_samples(soundfont, 0, [64], seconds=0.5)[64]
    after = render_samples(soundfont, 0, [40, 64], seconds=0.5)[64]
    assert alone == after


def test_drum_kits_play_on_channel_10(soundfont: Path) -> None:
    snare = read_wav(render_samples(soundfont, 0, [38], seconds=0.3, drums=True)[38])[0]
    assert rms(snare) > 0.005


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"program": 128}, "program"),
        ({"pitches": [60, 200]}, "pitches"),
        ({"pitches": []}, "pitches"),
        ({"velocity": 0}, "velocity"),
        ({"seconds": 0}, "seconds"),
        ({"seconds": 1000}, "seconds"),
        ({"sample_rate": 10}, "sample rate"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs: dict, why: str, soundfont: Path) -> None:
    args = {"soundfont": soundfont, "program": 0, "pitches": [60], **kwargs}
    with pytest.raises(UserError, match=why):
        render_samples(**args)
