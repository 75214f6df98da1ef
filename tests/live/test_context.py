"""The live context against miditok: streaming a file's events gives the offline tokens."""

from __future__ import annotations

import pytest

from antiphon.live.context import StreamingContext
from antiphon.models.midi.notes import read_midi_events
from antiphon.models.midi.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.create()


def stream_file(codec, path) -> list[int]:
    """Play a file's events into the context one at a time, as the input thread does, and
    encode each batch of closed ticks as it comes (as the engine thread does)."""
    ctx = StreamingContext(codec.grid)
    tokens: list[int] = []
    last_tick, last = 0, 0.0
    for ev in read_midi_events(path):
        if ev.kind == "on":
            ticks = ctx.note_on(ev.beat, ev.value, ev.velocity, ev.source)
        elif ev.kind == "off":
            ticks = ctx.note_off(ev.beat, ev.value, ev.source)
        else:
            ticks = ctx.pedal(ev.beat, ev.value, ev.source)
        tokens += codec.encode_ticks(ticks, last_tick)
        last_tick = ticks[-1].tick if ticks else last_tick
        last = ev.beat
    return tokens + codec.encode_ticks(ctx.finish(last), last_tick)


@pytest.mark.parametrize("name", ["chorale", "palestrina", "expressive"])
def test_streaming_equals_the_offline_tokenizer(tokenizer, name, request) -> None:
    path = request.getfixturevalue(name)
    offline = tokenizer.encode_file(path)  # miditok's own encoding of the file
    streamed = stream_file(tokenizer.codec(), path)
    assert streamed == offline
    if name == "expressive":  # the messy file exercises pedals and same-pitch overlaps
        vocab = [tokenizer.vocab[i] for i in offline]
        assert "Pedal_0" in vocab and "PedalOff_0" in vocab


def test_streaming_equals_offline_on_the_shared_benchmark_pieces(tokenizer, tmp_path) -> None:
    """Many more real pieces: JSB chorales from ../shared/data rendered to MIDI."""
    import json

    import mido

    from tests.conftest import SHARED

    source = SHARED / "data" / "polyphonic" / "jsb-chorales.json"
    if not source.exists():
        pytest.skip(f"{source} is not available on this machine")
    pieces = json.loads(source.read_text())["valid"][:20]
    for k, frames in enumerate(pieces):
        mid = mido.MidiFile(ticks_per_beat=480)
        track = mido.MidiTrack()
        mid.tracks.append(track)
        t_last, prev = 0, set()
        timed = []
        for i, frame in enumerate([*frames, []]):
            now = set(frame)
            for p in sorted(prev - now):
                timed.append((i * 240, mido.Message("note_off", note=p)))
            for p in sorted(now - prev):
                timed.append((i * 240, mido.Message("note_on", note=p, velocity=64 + p % 40)))
            prev = now
        for t, msg in timed:
            track.append(msg.copy(time=t - t_last))
            t_last = t
        path = tmp_path / f"jsb-{k}.mid"
        mid.save(path)
        assert stream_file(tokenizer.codec(), path) == tokenizer.encode_file(path)


def test_decoded_tokens_give_back_the_notes(tokenizer, expressive) -> None:
    from antiphon.models.midi.notes import read_performance

    tokens = tokenizer.encode_file(expressive)
    dec = tokenizer.codec().decoder()
    events = [e for t in tokens for e in dec.step(t)]
    ons = sorted((e.tick, e.pitch, e.velocity) for e in events if e.kind == "on")
    perf = read_performance(expressive, tokenizer.grid)
    assert ons == sorted((n.start, n.pitch, n.velocity) for n in perf.notes)
    assert not any(dec.sounding.values())  # every note-on met its note-off


def test_preview_leaves_the_context_untouched(tokenizer) -> None:
    ctx = StreamingContext(tokenizer.grid)
    ctx.note_on(0, 60, 80)
    ctx.note_off(0.5, 60)
    preview = ctx.preview(3)
    assert [(t.tick, [n.pitch for n in t.offs]) for t in preview][-1] == (4, [60])
    assert ctx.stream.cursor == 4  # the real stream closed nothing new
    assert ctx.advance(3) == preview  # the real thing, later, is what was previewed


def test_antiphons_own_notes_do_not_hold_the_players_phrase_open(tokenizer) -> None:
    from antiphon.live.context import OWN

    ctx = StreamingContext(tokenizer.grid)
    ctx.note_on(0, 60, 80, OWN)
    assert not ctx.holding
    ctx.note_on(0, 64, 80, ("in", 0))
    assert ctx.holding
