"""``antiphon eval --report DATA``: every model family compared on the same held-out pieces.

For each exported model: token NLL on the held-out pieces (token families share one
vocabulary, so their numbers compare; notes and frames models predict other things and
show "n/a"), the objective metrics' overlapping areas between the model's continuations of
those pieces and what the pieces really do next, parameters, ONNX size, and the live step
latency (onnxruntime, with the ratio to torch eager) from ``antiphon bench``.

The continuation task is the daemon's: a prompt of ``PROMPT_BEATS`` from each held-out
piece, then ``CONTINUE_BEATS`` generated; the reference set is the pieces' own next
``CONTINUE_BEATS``. Everything runs through onnxruntime, as users would run the models.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from antiphon.atomic import write_text
from antiphon.errors import UserError
from antiphon.export.bench import bench
from antiphon.live.continuation import ContinueOptions, continue_file
from antiphon.live.engine import open_voice
from antiphon.live.sampling import Sampling
from antiphon.live.session import ModelFile
from antiphon.models.corpus import resolve_corpus
from antiphon.models.dataset import cache_root
from antiphon.models.metrics import LONG_NOTE_BEATS
from antiphon.models.midi.notes import Grid, MidiFileError, read_performance, save_midi
from antiphon.models.midi.tokenizer import Tokenizer
from antiphon.models.nll import model_nll

PROMPT_BEATS = 16
CONTINUE_BEATS = 16
MAX_PIECES = 40
# Places per piece: the test split gives 40 pieces, one place each; the piano-only set is
# three long pieces, whose OA from three continuations swung by 0.05 between models with
# seeds alone, so each is continued from every 32 beats of it (up to this many places).
PLACES_PER_PIECE = {"test": 1, "piano": 8}
GRID = Grid(tpq=8)


@dataclass
class Row:
    model: str
    family: str
    params: int
    onnx_mb: float
    nll: float | None
    nll_tokens: int
    mean_oa: float | None
    oa: dict
    step_ms: float
    speedup: float
    lengths: dict | None = None  # the continuations' pooled note lengths (length_summary)

    def to_dict(self) -> dict:
        return dict(vars(self))


HELDOUT = ("test", "piano")


def heldout_pieces(data: str, limit: int = MAX_PIECES, heldout: str = "test") -> list[Path]:
    """The corpus's test split (held out from training and validation), or its keyboard
    works alone (``heldout="piano"``), pieces long enough for a prompt and a continuation."""
    if heldout not in HELDOUT:
        raise UserError(f"--heldout {heldout}: choose one of {', '.join(HELDOUT)}")
    corpus = resolve_corpus(data, cache_dir=cache_root(), progress=False)
    if heldout == "piano" and not corpus.keyboard:
        raise UserError(
            f"--heldout piano: {corpus.name} has no keyboard works (music21's corpus has; "
            "for a folder of piano music, --heldout test is its piano set)"
        )
    chosen = []
    for path in corpus.split("test", keyboard=heldout == "piano"):
        try:
            perf = read_performance(path, GRID)
        except MidiFileError:
            continue
        if perf.end >= (PROMPT_BEATS + CONTINUE_BEATS) * GRID.tpq:
            chosen.append(path)
        if len(chosen) >= limit:
            break
    if not chosen:
        raise UserError(f"{data}: no {heldout}-split piece is long enough for the comparison")
    return chosen


def crop(src: Path, start_beat: float, end_beat: float, out: Path) -> Path:
    """A MIDI file of the notes of ``src`` that start in [start, end) beats, shifted to 0
    (a prompt, or the reference continuation)."""
    perf = read_performance(src, GRID)
    lo, hi = start_beat * GRID.tpq, end_beat * GRID.tpq
    tpb = 480
    timed = []
    for n in perf.notes:
        if lo <= n.start < hi:
            end = min(n.end or n.start + 1, hi)
            timed.append((round((n.start - lo) * tpb / GRID.tpq), 1, n.pitch, n.velocity))
            timed.append((round((end - lo) * tpb / GRID.tpq), 0, n.pitch, 0))
    timed.sort()
    track = mido.MidiTrack()
    last = 0
    for tick, on, pitch, vel in timed:
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=vel, time=tick - last))
        last = tick
    mid = mido.MidiFile(ticks_per_beat=tpb)
    mid.tracks.append(track)
    return save_midi(mid, out)


def last_track(src: Path, out: Path) -> Path:
    """The continuation ``antiphon continue`` appended, alone, starting at 0."""
    mid = mido.MidiFile(src)
    track = mido.MidiTrack(m for m in mid.tracks[-1] if not m.is_meta)
    if len(track):  # the first delta is the prompt's length: the continuation starts at 0
        track[0] = track[0].copy(time=0)
    alone = mido.MidiFile(ticks_per_beat=mid.ticks_per_beat)
    alone.tracks.append(track)
    return save_midi(alone, out)


def token_nll(model: ModelFile, pieces: list[Path]) -> tuple[float | None, int]:
    """NLL/token over the held-out pieces for token families, through onnxruntime."""
    if model.info.representation != "tokens" or not model.info.tokenizer:
        return None, 0
    tok = Tokenizer.from_params(model.info.tokenizer)
    voice = open_voice(model)
    seqs = []
    for p in pieces:
        try:
            seqs.append(np.asarray([tok.bos, *tok.encode_file(p), tok.eos], dtype=np.int32))
        except MidiFileError:
            continue
    from antiphon.models.dataset import TokenSplit

    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    split = TokenSplit(np.concatenate(seqs), offsets)
    stepper = voice.stepper
    block = min(model.info.max_context, 256)

    def score(window: np.ndarray) -> np.ndarray:
        return stepper.log_probs(list(window))

    nll, n = model_nll(score, split, block)
    return nll, n


def places(pieces: list[Path], per_piece: int = 1) -> list[tuple[Path, float]]:
    """Where continuations start: ``(piece, beat)``, every prompt + continuation's length
    into each piece, up to ``per_piece`` places a piece."""
    span = PROMPT_BEATS + CONTINUE_BEATS
    out = []
    for p in pieces:
        beats = read_performance(p, GRID).end / GRID.tpq
        out += [(p, float(k * span)) for k in range(per_piece) if (k + 1) * span <= beats]
    return out


def continuation_oa(
    model: Path, pieces: list[Path], work: Path, per_piece: int = 1
) -> tuple[float | None, dict, dict | None]:
    """Mean OA, OA per metric, and the continuations' pooled note lengths."""
    from antiphon.models.metrics import length_summary, measure_files
    from antiphon.models.overlap import overlap_areas

    gen, ref = [], []
    for i, (p, at) in enumerate(places(pieces, per_piece)):
        prompt = crop(p, at, at + PROMPT_BEATS, work / f"prompt-{i}.mid")
        end = at + PROMPT_BEATS + CONTINUE_BEATS
        ref.append(crop(p, at + PROMPT_BEATS, end, work / f"ref-{i}.mid"))
        opts = ContinueOptions(bars=CONTINUE_BEATS / 4, sampling=Sampling(seed=i))
        try:
            (r,) = continue_file(prompt, work / f"cont-{i}.mid", model, opts)
        except MidiFileError:
            continue
        if r.notes:
            gen.append(last_track(r.path, work / f"gen-{i}.mid"))
    if not gen:
        return None, {}, None
    generated = measure_files(gen)
    oa = overlap_areas(generated, measure_files(ref))
    finite = [v for v in oa.values() if v is not None and np.isfinite(v)]
    lengths = length_summary(generated.note_lengths())
    return (float(np.mean(finite)) if finite else None), oa, lengths


def build_report(data: str, *, models: list[str] | None, out: Path, heldout: str = "test") -> dict:
    paths = [Path(m) for m in (models or sorted(Path("runs").glob("*/*.onnx")))]
    if not paths:
        raise UserError("no models to compare: pass --models A.onnx B.onnx ...")
    pieces = heldout_pieces(data, heldout=heldout)
    rows = []
    for path in paths:
        mf = ModelFile.open(path)
        nll, n = token_nll(mf, pieces)
        with tempfile.TemporaryDirectory() as tmp:
            mean_oa, oa, lengths = continuation_oa(
                path, pieces, Path(tmp), PLACES_PER_PIECE[heldout]
            )
        b = bench(path, context=min(256, mf.info.max_context - 1), steps=200)
        rows.append(
            Row(
                model=path.name,
                family=mf.info.family,
                params=b.params,
                onnx_mb=path.stat().st_size / 1e6,
                nll=nll,
                nll_tokens=n,
                mean_oa=mean_oa,
                oa=oa,
                step_ms=b.rows[0].p50_ms,
                speedup=b.speedup,
                lengths=lengths,
            )
        )
    n_places = len(places(pieces, PLACES_PER_PIECE[heldout]))
    write_text(out, markdown(rows, data, len(pieces), heldout, n_places), what="report")
    result = {
        "data": data,
        "heldout": heldout,
        "pieces": len(pieces),
        "places": n_places,
        "piece_names": [p.name for p in pieces],
        "rows": [r.to_dict() for r in rows],
    }
    write_text(out.with_suffix(".json"), json.dumps(result, indent=2, default=float), what="report")
    return result


def markdown(
    rows: list[Row], data: str, pieces: int, heldout: str = "test", n_places: int | None = None
) -> str:
    def f(x: float | None, spec: str) -> str:
        return "n/a" if x is None else format(x, spec)

    which = "the test split" if heldout == "test" else "the keyboard works of the test split"
    lines = [
        f"Held-out: {pieces} pieces of {which} of `{data}`; continuations of "
        f"{PROMPT_BEATS}-beat prompts ({n_places or pieces} places), {CONTINUE_BEATS} beats "
        "each (seeded); OA = mean "
        "overlapping area of the objective metrics against the pieces' real continuations; "
        "the last two columns pool every note of the continuations.",
        "",
        "| model | family | parameters | ONNX MB | NLL/token | mean OA | step ms (ORT p50) "
        "| ORT vs torch | p95 note (beats) | notes > 8 beats |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p95 = f(r.lengths["p95"], ".2f") if r.lengths else "n/a"
        over = f"{100 * r.lengths['over']:.2f} %" if r.lengths else "n/a"
        lines.append(
            f"| {r.model} | {r.family} | {r.params:,} | {r.onnx_mb:.1f} | {f(r.nll, '.3f')} "
            f"| {f(r.mean_oa, '.3f')} | {r.step_ms:.2f} | {r.speedup:.1f}x | {p95} | {over} |"
        )
    return "\n".join(lines) + "\n"


# -- note lengths of continuations -------------------------------------------------------
@dataclass
class LengthReport:
    """Note lengths of prompts and of a model's continuations of them (``antiphon eval
    --note-lengths``): what showed the stuck keys of issue #11."""

    model: str
    prompts: dict  # length_summary of every prompt note
    continuations: dict  # length_summary of every continuation note
    long_note_time: float  # share of the continuations' sounding time with a note > 8 beats
    worst: dict  # the run with the largest share of notes > 8 beats: prompt, seed, share
    runs: int
    seconds: float

    def to_dict(self) -> dict:
        return dict(vars(self))

    def markdown(self) -> str:
        p, c = self.prompts, self.continuations

        def pct(x: float) -> str:
            return f"{100 * x:.2f} %"

        rows = [
            ("median", f"{p['median']:.2f}", f"{c['median']:.2f}"),
            ("95th percentile", f"{p['p95']:.2f}", f"{c['p95']:.2f}"),
            ("99th percentile", f"{p['p99']:.2f}", f"{c['p99']:.2f}"),
            (f"notes longer than {LONG_NOTE_BEATS:g} beats", pct(p["over"]), pct(c["over"])),
        ]
        lines = [
            f"`{self.model}`: {self.runs} continuations of {self.seconds:g} s "
            f"({p['notes']:,} prompt notes, {c['notes']:,} continuation notes)",
            "",
            "| note length (beats) | the prompts | the continuations |",
            "|---|---:|---:|",
            *(f"| {a} | {b} | {x} |" for a, b, x in rows),
            "",
            f"time with a note held > {LONG_NOTE_BEATS:g} beats: {pct(self.long_note_time)} of "
            f"the continuations' sounding time; worst run: {pct(self.worst['over'])} of its "
            f"notes (`{self.worst['prompt']}`, seed {self.worst['seed']})",
        ]
        return "\n".join(lines) + "\n"


def continuation_lengths(
    prompts: str | Path,
    model: str | Path | None = None,
    *,
    seeds: list[int] | tuple[int, ...] = (1,),
    seconds: float = 20.0,
) -> LengthReport:
    """Continue every MIDI file under ``prompts`` with each seed, as ``antiphon continue
    --seconds S --seed N`` does, and measure the note lengths of prompts and continuations
    on the metrics' reading (notes in beats, pedal not lengthening them)."""
    from antiphon.live.session import default_model_path
    from antiphon.models.metrics import length_summary, long_note_time, metric_grid, midi_files

    files = midi_files(Path(prompts))
    model_path = Path(model) if model is not None else default_model_path()
    grid = metric_grid()
    prompt_lengths: list[float] = []
    lengths: list[float] = []
    held = sounded = 0.0
    worst = {"over": -1.0, "prompt": "", "seed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i, f in enumerate(files):
            prompt = read_performance(f, grid).notes
            prompt_lengths += [((n.end or n.start + 1) - n.start) / grid.tpq for n in prompt]
            for seed in seeds:
                opts = ContinueOptions(seconds=seconds, sampling=Sampling(seed=seed))
                (r,) = continue_file(f, work / f"cont-{i}.mid", model_path, opts)
                if not r.notes:
                    continue
                notes = read_performance(last_track(r.path, work / "gen.mid"), grid).notes
                starts = np.array([n.start for n in notes])
                ends = np.array([n.end or n.start + 1 for n in notes])
                run = (ends - starts) / grid.tpq
                lengths += run.tolist()
                held += long_note_time(starts, ends, grid.tpq)
                sounded += _sounding_beats(starts, ends, grid.tpq)
                over = float((run > LONG_NOTE_BEATS).mean())
                if over > worst["over"]:
                    worst = {"over": over, "prompt": f.name, "seed": seed}
    return LengthReport(
        model=model_path.name,
        prompts=length_summary(np.array(prompt_lengths)),
        continuations=length_summary(np.array(lengths)),
        long_note_time=held / sounded if sounded else 0.0,
        worst=worst,
        runs=len(files) * len(seeds),
        seconds=seconds,
    )


def _sounding_beats(starts: np.ndarray, ends: np.ndarray, tpq: int) -> float:
    from antiphon.models.metrics import sounding

    t0, t1, count = sounding(starts, ends)
    return float(((t1 - t0) * (count > 0)).sum() / tpq)
