"""``antiphon continue``: extend a MIDI file with a model, offline, with onnxruntime only.

The output is the input file unchanged plus one new track holding the continuation, which
starts where the prompt's last event ends. The prompt goes through the same ``NoteStream``
and codec as live input; the KV cache carries from the prompt into the generation, and a
prompt longer than the model's window keeps its most recent part.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import mido

from antiphon.errors import UserError
from antiphon.live.engine import open_voice
from antiphon.live.sampling import Sampler, Sampling
from antiphon.live.session import ModelFile
from antiphon.live.shaping import NoteEvent, Shaping, shape
from antiphon.models.midi.codec import Decoded
from antiphon.models.midi.notes import (
    Grid,
    MidiFileError,
    RawEvent,
    TickEvents,
    event_ticks,
    midi_events,
    read_midi_file,
    save_midi,
)
from antiphon.models.midi.smf import MAX_TRACKS

DEFAULT_SECONDS = 20.0
MAX_BPM = 1000.0  # a faster tempo is a corrupt one (a tempo of 1 us/beat asks for days of music)
# A longer silence in the prompt is heard as this long: more rests only fill the model's window,
# and a corrupt delta time can mean days of them.
PROMPT_GAP_BEATS = 64.0
MAX_DELTA = 0x0FFFFFFF  # the largest delta time a MIDI file can hold (4 bytes)


@dataclass
class ContinueOptions:
    seconds: float | None = None
    bars: float | None = None
    sampling: Sampling = field(default_factory=Sampling)
    variations: int = 1
    shaping: Shaping = field(default_factory=Shaping)
    provider: str = "auto"  # onnxruntime's: auto|cpu|cuda
    interpolate: str | None = None  # OTHER.mid: a morph from the prompt's phrase to OTHER's
    phrases: int = 5  # --interpolate: phrases of the morph (the length, instead of --seconds)


@dataclass
class ContinueResult:
    path: Path
    prompt_ticks: int  # ticks of the prompt that carry events
    tokens: int  # model steps generated
    notes: int
    seconds: float  # musical length generated
    compute_seconds: float  # generation time (prompt prefill + sampling)


def file_tempo_and_meter(mid: mido.MidiFile) -> tuple[float, tuple[int, int]]:
    """The first tempo (bpm) and time signature of a file; 120 bpm and 4/4 when absent."""
    bpm, meter = 120.0, (4, 4)
    found_tempo = found_meter = False
    for track in mid.tracks:
        for msg in track:
            if msg.type == "set_tempo" and not found_tempo:
                bpm = mido.tempo2bpm(msg.tempo) if msg.tempo > 0 else math.inf
                found_tempo = True
            elif msg.type == "time_signature" and not found_meter:
                meter, found_meter = (msg.numerator, msg.denominator), True
    return bpm, meter


def length_in_beats(opts: ContinueOptions, bpm: float, meter: tuple[int, int]) -> float:
    if opts.bars is not None:
        if opts.bars <= 0:
            raise UserError("--bars must be positive")
        return opts.bars * meter[0] * 4.0 / meter[1]
    seconds = DEFAULT_SECONDS if opts.seconds is None else opts.seconds
    if seconds <= 0:
        raise UserError("--seconds must be positive")
    return seconds * bpm / 60.0


def variation_paths(out: Path, k: int) -> list[Path]:
    if k == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix or '.mid'}") for i in range(k)]


def continue_file(
    inp: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    opts: ContinueOptions | None = None,
) -> list[ContinueResult]:
    opts = opts or ContinueOptions()
    opts.sampling.validate()
    if opts.variations < 1:
        raise UserError("--variations must be at least 1")
    inp, out = Path(inp), Path(out)
    mid = read_midi_file(inp)  # a bad file fails before the model loads
    if len(mid.tracks) >= MAX_TRACKS:
        raise MidiFileError(f"{inp}: it has {len(mid.tracks)} tracks, no room for one more")
    bpm, meter = file_tempo_and_meter(mid)
    if bpm > MAX_BPM:
        raise MidiFileError(f"{inp}: its tempo of {bpm:.4g} bpm is over {MAX_BPM:.0f} (corrupt?)")
    if opts.bars is not None and not (1 <= meter[0] <= 64 and 1 <= meter[1] <= 64):
        n, d = meter
        raise MidiFileError(f"{inp}: its time signature {n}/{d} has no bars to count (--seconds?)")
    events = midi_events(mid)
    mf = ModelFile.open(model, provider=opts.provider)
    voice = open_voice(mf, max_gap_beats=PROMPT_GAP_BEATS)
    ticks = prompt_ticks(inp, events, voice.grid)
    prompt_end = ticks[-1].tick
    length = round(length_in_beats(opts, bpm, meter) * voice.grid.tpq)
    other = None
    if opts.interpolate is not None:
        other, length = _morph_target(opts, voice, mf)

    results = []
    for i, path in enumerate(variation_paths(out, opts.variations)):
        seed = None if opts.sampling.seed is None else opts.sampling.seed + i
        sampler = Sampler(replace(opts.sampling, seed=seed))
        t0 = time.perf_counter()
        state = voice.observe(voice.empty(), ticks)  # the prompt; a long one keeps its end
        events: list[Decoded] = []
        steps = 0
        if other is not None:
            plan = voice.interpolate(  # type: ignore[attr-defined]
                state, other, start_tick=prompt_end, phrases=opts.phrases, sampler=sampler
            )
        else:
            plan = voice.plan(
                state,
                [],
                start_tick=prompt_end,
                until_tick=prompt_end + length,
                sampler=sampler,
                note_first=False,
            )
        for step in plan:
            events += step.events
            steps += step.tokens
        compute = time.perf_counter() - t0
        notes = shape(events_to_notes(events, prompt_end, voice.grid.tpq, bpm), opts.shaping)
        write_continuation(mid, notes, path, prompt_end / voice.grid.tpq, bpm)
        seconds = length / voice.grid.tpq * 60 / bpm
        results.append(ContinueResult(path, len(ticks), steps, len(notes), seconds, compute))
    return results


def _morph_target(opts: ContinueOptions, voice, mf: ModelFile) -> tuple[list[TickEvents], int]:  # type: ignore[no-untyped-def]
    """``--interpolate OTHER.mid``: OTHER's ticks on the voice's grid and the morph's length
    in ticks; a model that cannot morph, a bad OTHER or a bad ``--steps`` is one line."""
    if not hasattr(voice, "interpolate"):
        raise UserError(
            f"--interpolate: a {mf.info.family} model has no latent space to morph through; "
            "use a musicvae model"
        )
    if opts.phrases < 1:
        raise UserError("--steps must be at least 1")
    path = Path(opts.interpolate or "")
    other = prompt_ticks(path, midi_events(read_midi_file(path)), voice.grid)
    return other, opts.phrases * voice.steps


def prompt_ticks(path: Path, events: list[RawEvent], grid: Grid) -> list[TickEvents]:
    """The closed ticks of a MIDI file's events, as the live context would have heard them."""
    ticks = event_ticks(events, grid)
    if not any(t.ons for t in ticks):
        raise MidiFileError(f"{path}: the MIDI file holds no notes to continue")
    return ticks


def events_to_notes(events: list[Decoded], origin: int, tpq: int, bpm: float) -> list[NoteEvent]:
    """Pair decoded note-ons/offs (FIFO per pitch) into notes, in seconds after ``origin``."""
    sec = 60.0 / bpm / tpq
    open_: dict[int, list[tuple[int, int]]] = {}
    notes: list[NoteEvent] = []
    for e in events:
        if e.kind == "on":
            open_.setdefault(e.pitch, []).append((e.tick, e.velocity))
        elif e.kind == "off" and open_.get(e.pitch):
            start, vel = open_[e.pitch].pop(0)
            end = max(e.tick, start + 1)
            notes.append(NoteEvent((start - origin) * sec, (end - origin) * sec, e.pitch, vel))
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


def write_continuation(
    mid: mido.MidiFile, notes: list[NoteEvent], path: Path, origin_beats: float, bpm: float
) -> None:
    """The input file plus one track of ``notes`` (seconds after ``origin_beats``)."""
    tpb = mid.ticks_per_beat

    def to_tick(seconds: float) -> int:
        return round((origin_beats + seconds * bpm / 60.0) * tpb)

    timed = []
    for n in notes:
        timed.append(
            (to_tick(n.start), 1, mido.Message("note_on", note=n.pitch, velocity=n.velocity))
        )
        end = max(to_tick(n.end), to_tick(n.start) + 1)  # at a coarse division, not on its start
        timed.append((end, 0, mido.Message("note_off", note=n.pitch, velocity=0)))
    timed.sort(key=lambda x: (x[0], x[1]))
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="antiphon", time=0)])
    last = 0
    for tick, _, msg in timed:
        while tick - last > MAX_DELTA:  # a later time is reached through empty markers
            track.append(mido.MetaMessage("marker", text="", time=MAX_DELTA))
            last += MAX_DELTA
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    result = mido.MidiFile(type=1 if mid.type == 0 else mid.type, ticks_per_beat=tpb)
    result.tracks.extend(mid.tracks)
    result.tracks.append(track)
    save_midi(result, path, what="continuation")
