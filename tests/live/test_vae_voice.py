"""MusicVAE's voice through onnxruntime: variations by similarity, the morph between two
phrases, ``--mode vary`` refused for a model that cannot vary and answered over JACK."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

from antiphon.errors import UserError
from antiphon.live.sampling import Sampler, Sampling
from antiphon.models.midi.melody import MELODY_GRID, NO_EVENT, MelodyRange, skyline
from antiphon.models.midi.notes import file_ticks, read_performance

pytest.importorskip("torch")  # the model is trained here
RANGE = MelodyRange(21, 88)


def _voice(path: Path):  # type: ignore[no-untyped-def]
    from antiphon.live.engine import open_voice
    from antiphon.live.session import ModelFile

    return open_voice(ModelFile.open(path))


def _motif(path: Path, i: int) -> tuple[list, np.ndarray]:
    """A motif file's closed ticks and its first phrase as melody events."""
    f = path.parent / "corpus" / f"motif-{i:02d}.mid"
    notes = read_performance(f, MELODY_GRID).notes
    return file_ticks(f, MELODY_GRID), skyline(notes, 0, 32, RANGE)


def _events(steps, start: int, length: int = 32) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The melody events of planned steps, ``length`` of them from ``start``."""
    out = np.full(length, NO_EVENT)
    for step in steps:
        for e in step.events:
            if e.kind == "on" and start <= e.tick < start + length:
                out[e.tick - start] = RANGE.event(e.pitch)
    return out


def _answer(voice, ticks, similarity: float, seed: int, how: str = "vary") -> np.ndarray:  # type: ignore[no-untyped-def]
    end = ticks[-1].tick
    sampler = Sampler(Sampling(temperature=0.0, seed=seed, similarity=similarity))
    plan = getattr(voice, how)(
        voice.observe(voice.empty(), ticks),
        [],
        start_tick=end,
        until_tick=end + 32,
        sampler=sampler,
    )
    return _events(list(plan), end)


def onsets(events: np.ndarray) -> np.ndarray:
    """Note-ons where they are, everything else NO_EVENT (what the planned notes show)."""
    return np.where(np.asarray(events) >= 2, events, NO_EVENT)


def test_similarity_one_replays_the_phrase_and_zero_plays_anything(motif_vae) -> None:
    path, _ = motif_vae
    voice = _voice(path)
    ticks, phrase = _motif(path, 0)
    own = np.asarray(voice.stepper.greedy(phrase.tolist()))
    same = [_answer(voice, ticks, 1.0, seed) for seed in range(3)]
    for answer in same:  # the latent of the phrase itself, whatever the seed
        assert answer.tolist() == onsets(own).tolist()
    anything = [_answer(voice, ticks, 0.0, seed) for seed in range(6)]
    assert len({a.tobytes() for a in anything}) > 1  # the prior: seeds differ
    close = np.mean(
        [(a == phrase).mean() for a in [_answer(voice, ticks, 0.9, s) for s in range(6)]]
    )
    far = np.mean([(a == phrase).mean() for a in anything])
    assert close > far


def test_respond_walks_away_while_vary_stays_near_the_phrase(motif_vae) -> None:
    path, _ = motif_vae
    voice = _voice(path)
    ticks, phrase = _motif(path, 3)
    end = ticks[-1].tick
    sampler = lambda seed: Sampler(Sampling(temperature=0.0, seed=seed, similarity=0.7))  # noqa: E731
    state = voice.observe(voice.empty(), ticks)
    agreement = {"vary": [], "plan": []}
    for how in agreement:
        for seed in range(4):
            steps = list(getattr(voice, how)(
                state, [], start_tick=end, until_tick=end + 6 * 32, sampler=sampler(seed)
            ))  # fmt: skip
            agreement[how].append((_events(steps, end + 5 * 32) == phrase).mean())
    assert np.mean(agreement["vary"]) > np.mean(agreement["plan"])


def test_interpolation_runs_from_one_phrase_to_the_other(motif_vae) -> None:
    path, _ = motif_vae
    voice = _voice(path)
    ticks_a, a = _motif(path, 0)
    ticks_b, b = _motif(path, 2)
    end = ticks_a[-1].tick
    sampler = Sampler(Sampling(temperature=0.0, seed=0))
    state = voice.observe(voice.empty(), ticks_a)
    decoded = []  # (latent, the event before the phrase) of each phrase played
    decode = voice.stepper.decode

    def spy(z, choose, previous=None):  # type: ignore[no-untyped-def]
        decoded.append((z.copy(), previous))
        return decode(z, choose, previous)

    voice.stepper.decode = spy
    steps = list(voice.interpolate(state, ticks_b, start_tick=end, phrases=4, sampler=sampler))
    first, last = _events(steps, end), _events(steps, end + 3 * 32)
    mu_a, mu_b = (voice.stepper.encode(m.tolist())[0] for m in (a, b))
    assert len(decoded) == 4
    np.testing.assert_array_equal(decoded[0][0], mu_a)  # from the phrase heard...
    np.testing.assert_array_equal(decoded[3][0], mu_b)  # ...to the other one, exactly
    argmax = lambda logits, s: int(np.argmax(logits))  # noqa: E731
    # The first phrase is a's reconstruction; the last, b's latent decoded on from the
    # phrase before it (phrases join: b's decode starts from the event before it).
    assert first.tolist() == onsets(np.asarray(voice.stepper.greedy(a.tolist()))).tolist()
    want_b = np.asarray(list(decode(mu_b, argmax, decoded[3][1])))
    assert last.tolist() == onsets(want_b).tolist()
    assert steps[-1].tick == end + 4 * 32


def test_continue_interpolate_writes_the_morph(motif_vae, tmp_path) -> None:
    import mido

    from antiphon.live.continuation import ContinueOptions, continue_file

    path, _ = motif_vae
    corpus = path.parent / "corpus"
    out = tmp_path / "morph.mid"
    opts = ContinueOptions(interpolate=str(corpus / "motif-02.mid"), phrases=3,
                           sampling=Sampling(temperature=0.0, seed=1))  # fmt: skip
    (r,) = continue_file(corpus / "motif-00.mid", out, path, opts)
    assert r.notes > 0 and r.tokens == 3 * 32
    added = [m for m in mido.MidiFile(out).tracks[-1] if m.type in ("note_on", "note_off")]
    assert sum(m.type == "note_on" and m.velocity > 0 for m in added) == r.notes


def test_interpolate_and_vary_need_a_model_that_varies(tiny_onnx, chorale, tmp_path) -> None:
    from antiphon.live.continuation import ContinueOptions, continue_file
    from antiphon.live.daemon import Daemon, DaemonConfig
    from antiphon.live.policy import PolicyConfig

    with pytest.raises(UserError, match="musicvae"):
        continue_file(
            chorale, tmp_path / "x.mid", tiny_onnx, ContinueOptions(interpolate=str(chorale))
        )
    with pytest.raises(UserError, match="--mode vary"):  # refused before any port opens
        Daemon(DaemonConfig(model=str(tiny_onnx), policy=PolicyConfig(mode="vary")))
    with pytest.raises(UserError, match="similarity"):
        Sampling(similarity=1.5).validate()


@pytest.mark.jack
def test_live_vary_answers_a_phrase(motif_vae, jack_server) -> None:
    from antiphon.live.harness import DaemonProcess, Player

    path, _ = motif_vae
    name = "antiphon-vary"
    args = ["--model", str(path), "--mode", "vary", "--similarity", "0.8", "--silence-ms", "300",
            "--seed", "2"]  # fmt: skip
    daemon = DaemonProcess(args, name=name)
    player = Player(daemon_name=name, client=name + "-kbd")
    try:
        assert "mode=vary" in daemon.ready_line and "musicvae" in daemon.ready_line
        t_off = player.phrase((60, 62, 64, 65, 67, 65, 64))
        heard = player.wait_for(
            lambda r: r.t > t_off and r.data[0] & 0xF0 == 0x90 and r.data[2] > 0, 4.0
        )
        assert heard is not None, "no variation was played"
        time.sleep(0.5)
        daemon.signal(signal.SIGINT)
        assert daemon.wait(5) == 0
        time.sleep(0.05)
        assert player.hanging() == {}
    finally:
        player.close()  # first: see antiphon.live.jack on closing as the graph changes
        daemon.kill()


def test_performer_controls_and_the_vary_mode(motif_vae, tiny_onnx) -> None:
    from antiphon.live.performer import Control, Cue, Heard
    from tests.live.test_performer import make, play_out, prompt

    path, _ = motif_vae
    perf, sched, out, clock, voice = make(path)
    perf._control(Control("similarity", 0.2))
    assert perf.sampler.sampling.similarity == 0.2
    perf._control(Control("mode", "vary"))
    assert perf.policy.mode == "vary"
    ticks = prompt(voice)
    perf._handle(Heard(ticks, player=True))
    perf._handle(Cue(clock.t + 0.75, 2.0, [], perf.epoch))
    play_out(sched, clock, clock.t + 5)
    assert any(m[0] & 0xF0 == 0x90 and m[2] > 0 for _, m in out.sent)  # a variation sounded
    other, *_ = make(tiny_onnx)
    other._control(Control("mode", "vary"))  # a transformer cannot vary: the mode stays
    assert other.policy.mode == "respond"
