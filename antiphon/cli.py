"""The ``antiphon`` command: argument parsing and printing over library functions.

Each command turns its arguments into one library call and prints what comes back. The
library is imported inside the handlers, so the daemon and ``continue`` start without torch.
A ``UserError`` prints as one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from antiphon import __version__
from antiphon.atomic import write_text
from antiphon.errors import UserError


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    p.add_argument("--seed", type=int, default=None, help="fixed seed: same input, same output")
    p.add_argument(
        "--similarity",
        type=float,
        default=0.5,
        help="musicvae: how close a variation stays to the phrase, 0 (anything) to 1 (the same)",
    )


def _add_provider(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--provider",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="onnxruntime provider (default auto: CUDA with antiphon[gpu] and a GPU, else CPU)",
    )


def _add_shaping(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transpose", type=int, default=0, help="semitones added to every note")
    p.add_argument("--velocity-scale", type=float, default=1.0, help="multiply velocities")
    p.add_argument("--lowest", type=int, default=0, help="lowest pitch (notes fold by octaves)")
    p.add_argument("--highest", type=int, default=127, help="highest pitch")
    p.add_argument("--max-note", type=float, default=None, help="longest note in seconds")
    p.add_argument("--polyphony", type=int, default=None, help="most notes sounding at once")
    p.add_argument(
        "--tempo-scale", type=float, default=1.0, help="play generated notes this much faster"
    )
    p.add_argument("--notes", type=int, default=None, help="most notes per continuation/answer")


def _shaping(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from antiphon.live.shaping import Shaping

    return Shaping(
        transpose=args.transpose,
        velocity_scale=args.velocity_scale,
        lowest=args.lowest,
        highest=args.highest,
        max_note_seconds=args.max_note,
        polyphony=args.polyphony,
        tempo_scale=args.tempo_scale,
        max_notes=args.notes,
    )


def _sampling(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from antiphon.live.sampling import Sampling

    return Sampling(args.temperature, args.top_p, args.seed, args.similarity).validate()


def _overrides(items: list[str] | None) -> dict:
    """``--set KEY=VALUE``: numbers and booleans as JSON, anything else as a string."""
    overrides = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if not value:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        if value.lower() in ("true", "false"):  # Python's True/False too: "False" is truthy
            overrides[key] = value.lower() == "true"
        else:
            try:
                number = value.lstrip("-")[:1].isdigit()
                overrides[key] = json.loads(value) if number else value
            except ValueError:  # "1.2.3": the family's config says what it wants
                overrides[key] = value
    return overrides


def _write_json(path: str | None, data: dict) -> None:
    """``--json FILE``: the command's results, also as JSON."""
    if path:
        write_text(path, json.dumps(data, indent=2), what="JSON results")


# -- commands ------------------------------------------------------------------------------
DEFAULT_STEPS, DEFAULT_BATCH = 1400, 8  # ``train``'s, where a family names none of its own


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)


def cmd_train(args: argparse.Namespace) -> int:
    from antiphon.models.train import train

    result = train(train_config(args), resume=args.resume, log=print)
    if result:  # under torchrun only rank 0 reports
        print(json.dumps(result, indent=2))
    return 0


def train_config(args: argparse.Namespace) -> Any:
    """``train``'s arguments as a ``TrainConfig`` (imported here: the CLI loads no library at
    start); the family's own steps and batch where none were given."""
    from antiphon.models.registry import family
    from antiphon.models.train import TrainConfig

    fam = family(args.arch)
    return TrainConfig(
        arch=args.arch,
        data=args.data,
        out=args.out,
        tokenizer=args.tokenizer,
        steps=_first(args.steps, fam.steps, DEFAULT_STEPS),
        batch_size=_first(args.batch_size, fam.batch_size, DEFAULT_BATCH),
        block_size=args.block_size,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        transpose=args.transpose,
        bench_transpose=args.bench_transpose,
        velocity=args.velocity,
        tempo=args.tempo,
        keyboard_weight=args.keyboard_weight,
        eval_every=args.eval_every,
        eval_pieces=args.eval_pieces,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        precision=args.precision,
        model=_overrides(args.set),
    )


def cmd_export(args: argparse.Namespace) -> int:
    from antiphon.export.pipeline import export_model

    export_model(args.checkpoint, args.output, int8=args.int8, fp16=args.fp16, log=print)
    return 0


def _add_soundfont(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--soundfont",
        default=None,
        help="a General MIDI .sf2 (default: the system's, else pretty_midi's TimGM6mb)",
    )


def _rendered(r) -> str:  # type: ignore[no-untyped-def]
    return (
        f"{r.path}: {r.seconds:.1f} s of audio ({r.notes} notes) through {r.soundfont.name}, "
        f"rms {r.rms:.3f}, peak {r.peak:.2f}"
    )


def cmd_render(args: argparse.Namespace) -> int:
    from antiphon.sound.render import render_midi

    print(_rendered(render_midi(args.input, args.output, args.soundfont, args.sample_rate)))
    return 0


def cmd_continue(args: argparse.Namespace) -> int:
    from antiphon.live.continuation import ContinueOptions, continue_file

    opts = ContinueOptions(
        seconds=args.seconds,
        bars=args.bars,
        sampling=_sampling(args),
        variations=args.variations,
        shaping=_shaping(args),
        provider=args.provider,
        interpolate=args.interpolate,
        phrases=args.steps,
    )
    if args.wav:  # missing FluidSynth or SoundFont: said before the model runs
        from antiphon.sound.fluid import load
        from antiphon.sound.render import render_midi
        from antiphon.sound.soundfont import find_soundfont

        load()
        soundfont = find_soundfont(args.soundfont)
    for r in continue_file(args.input, args.output, args.model, opts):
        print(
            f"{r.path}: +{r.notes} notes, {r.seconds:.1f} s of music from {r.tokens} model steps "
            f"in {r.compute_seconds * 1e3:.0f} ms of compute"
        )
        if args.wav:
            print(_rendered(render_midi(r.path, r.path.with_suffix(".wav"), soundfont)))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.live:
        import signal

        from antiphon.live.livebench import format_live, run_live_bench

        # A bench killed with SIGTERM unwinds like Ctrl-C: the daemon, the load and the
        # JACK server it started are stopped by their context managers, not left running.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

        live = run_live_bench(
            args.model,
            phrases=args.phrases,
            period=args.jack_period,
            realtime=args.realtime,
            jack_realtime=args.jack_realtime or None,
            load=args.load,
            soak_minutes=args.soak,
            seed=args.seed,
            disturb=args.disturb,
            silence_ms=args.silence_ms,
        )
        print(format_live(live))
        _write_json(args.json, live.to_dict())
        return 0
    from antiphon.export.bench import bench, format_table

    options = {k: getattr(args, k) for k in ("context", "steps", "threads", "provider")}
    result = bench(args.model, **options)
    print(format_table(result))
    _write_json(args.json, result.to_dict())
    return 0


def cmd_ports(args: argparse.Namespace) -> int:
    from antiphon.live.ports import port_listing

    for line in port_listing(args.backend):
        print(line)
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    import logging

    from antiphon.live.daemon import DaemonConfig, parse_cc_map
    from antiphon.live.policy import PolicyConfig
    from antiphon.live.serve import serve
    from antiphon.sound.synth import SynthOptions

    if (args.synth_input or args.audio_driver) and not args.synth:
        raise UserError("--synth-input and --audio-driver go with --synth")
    if args.soundfont and not (args.synth or args.web or args.studio):
        raise UserError("--soundfont goes with --synth or the studio (--web)")

    logging.basicConfig(level=logging.WARNING, format="antiphon: %(message)s")
    config = DaemonConfig(
        model=args.model,
        name=args.name,
        backend=args.backend,
        input=args.input,
        output=args.output,
        input_channel=args.input_channel,
        output_channel=args.output_channel,
        bpm=args.bpm,
        clock=args.clock,
        quantize=args.quantize,
        policy=PolicyConfig(
            mode=args.mode,
            silence=args.silence_ms / 1000.0,
            min_response=args.min_response,
            max_response=args.max_response,
            hold_limit=args.hold_limit,
        ),
        sampling=_sampling(args),
        shaping=_shaping(args),
        cc_map=parse_cc_map(args.cc_map),
        record=args.record,
        stats=args.stats,
        realtime=args.realtime,
        provider=args.provider,
        synth=SynthOptions(args.soundfont, args.audio_driver, args.name) if args.synth else None,
        synth_input=args.synth_input,
        models=args.models,
    )
    if args.models and not Path(args.models).is_dir():
        raise UserError(f"--models {args.models}: no such folder")
    attach = None
    if args.web or args.studio:
        from functools import partial

        from antiphon.studio import attach_studio, require

        require()  # before the model loads
        attach = partial(
            attach_studio, port=args.web_port, soundfont=args.soundfont, open_page=args.studio
        )
    return serve(config, ready=lambda line: print(line, flush=True), attach=attach)


def cmd_studio(args: argparse.Namespace) -> int:
    args.studio = True
    return cmd_live(args)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.polyphonic:
        from antiphon.export.polyeval import evaluate_polyphonic

        if not args.model:
            raise UserError("--polyphonic needs --model M.onnx (a piano-roll model)")
        result = evaluate_polyphonic(
            args.polyphonic, args.split, args.model, provider=args.provider
        )
        print(json.dumps(result, indent=2))
    elif args.reconstruction or args.multitrack:
        from antiphon.export.geneval import evaluate_multitrack, evaluate_reconstruction

        if not args.model:
            raise UserError("--reconstruction/--multitrack need --model M.onnx")
        if args.reconstruction:
            result = evaluate_reconstruction(
                args.reconstruction, args.model, provider=args.provider
            )
        else:
            result = evaluate_multitrack(args.multitrack, args.model, provider=args.provider)
            print(result["table"])
        print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2))
    elif args.generated or args.reference:
        from antiphon.models.metrics import compare_dirs

        if not (args.generated and args.reference):
            raise UserError("--generated and --reference go together")
        report = compare_dirs(
            Path(args.generated), Path(args.reference), Path(args.plots) if args.plots else None
        )
        print(report.table())
        result = report.to_dict()
    elif args.note_lengths:
        from antiphon.export.report import continuation_lengths

        seeds = [int(x) for x in args.seeds.split(",")]
        lengths = continuation_lengths(
            args.note_lengths, args.model, seeds=seeds, seconds=args.seconds
        )
        print(lengths.markdown())
        result = lengths.to_dict()
    elif args.report:
        from antiphon.export.report import build_report

        result = build_report(
            args.report, models=args.models, out=Path(args.output), heldout=args.heldout
        )
        print(Path(args.output).read_text())
    elif args.gan:
        from antiphon.export.gan_eval import evaluate_gan

        ev = evaluate_gan(args.gan, args.gan_data, samples=args.gan_samples, provider=args.provider)
        print(ev.table())
        result = ev.to_dict()
    elif args.model:
        from antiphon.live.session import ModelFile

        mf = ModelFile.open(args.model, provider=args.provider)
        print(mf.info.describe())
        print(f"onnxruntime provider: {mf.provider}")
        info = mf.info
        result = info.to_props()
    else:
        raise UserError(
            "antiphon eval needs --polyphonic, --generated/--reference, --note-lengths, --report, "
            "--gan, --reconstruction, --multitrack or --model"
        )
    _write_json(args.json, result)
    return 0


def _add_live(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="ONNX model (default: the bundled one)")
    p.add_argument("--name", default="antiphon", help="MIDI client name (default antiphon)")
    p.add_argument(
        "--backend", default="auto", choices=["auto", "alsa", "jack", "coremidi", "winmm"]
    )
    p.add_argument("--input", default=None, help="connect to an existing port (substring)")
    p.add_argument("--output", default=None, help="play into an existing port (substring)")
    p.add_argument("--input-channel", type=int, default=None, help="listen to 1-16 (default all)")
    p.add_argument("--output-channel", type=int, default=1, help="play on 1-16 (default 1)")
    p.add_argument(
        "--mode",
        default="respond",
        choices=["respond", "accompany", "vary"],
        help="vary (musicvae): answer each phrase with a variation of it (--similarity)",
    )
    p.add_argument("--silence-ms", type=float, default=500, help="silence that ends a phrase")
    p.add_argument("--min-response", type=float, default=2.0, help="shortest answer (s)")
    p.add_argument("--max-response", type=float, default=12.0, help="longest answer (s)")
    p.add_argument(
        "--hold-limit",
        type=float,
        default=8.0,
        help="a key or pedal down this long with nothing played is taken as released (s)",
    )
    p.add_argument("--bpm", type=float, default=120.0, help="tempo without --clock")
    p.add_argument("--clock", action="store_true", help="follow incoming MIDI clock")
    p.add_argument("--quantize", default="1/16", help="with --clock: grid for responses")
    p.add_argument(
        "--cc-map",
        default=None,
        help="e.g. temperature=1,top_p=2,mode=80,panic=81,vary=82,similarity=83",
    )
    p.add_argument("--record", default=None, help="the session as FILE.mid, kept current")
    p.add_argument("--stats", default=None, help="append one JSON line per response to FILE")
    p.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="play notes from a SCHED_FIFO thread, as JACK's own threads run (default: "
        "where the JACK server runs realtime; a warning where the system refuses it)",
    )
    p.add_argument(
        "--synth", action="store_true", help="play antiphon's notes through FluidSynth (no DAW)"
    )
    p.add_argument("--synth-input", action="store_true", help="with --synth: the player's too")
    p.add_argument(
        "--audio-driver",
        default=None,
        help="with --synth: FluidSynth's driver (jack, pulseaudio, alsa, coreaudio, wasapi, ...;"
        " default: the platform's first that opens)",
    )
    _add_sampling(p)
    _add_shaping(p)
    _add_provider(p)
    p.add_argument(
        "--web", action="store_true", help="serve the studio on 127.0.0.1 (antiphon[studio])"
    )
    p.add_argument("--web-port", type=int, default=8765, help="the studio's port (default 8765)")
    p.add_argument(
        "--models",
        default=None,
        metavar="DIR",
        help="the studio's model menu: the .onnx files of DIR (default: --model's folder)",
    )
    _add_soundfont(p)


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="antiphon", description="A real-time MIDI improvisation daemon and its models."
    )
    parser.add_argument("--version", action="version", version=f"antiphon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from antiphon.live.harness import PERIOD_FRAMES
    from antiphon.models.registry import FAMILIES

    p = sub.add_parser("train", help="train a model family on a MIDI corpus")

    p.add_argument(
        "--arch",
        default="transformer",
        choices=sorted(FAMILIES),
        help="model family (default transformer)",
    )
    p.add_argument(
        "--data",
        default="music21",
        help="'music21' (default), 'music21:bach,...' or a folder of MIDI files",
    )
    p.add_argument("--out", default="runs/default", help="run folder (checkpoint: OUT/ckpt.pt)")
    p.add_argument("--tokenizer", default="midilike", choices=["midilike", "remi", "tsd"])
    own_steps = "".join(f"; {f.name} {f.steps:,}" for f in FAMILIES.values() if f.steps)
    own_batch = "".join(f"; {f.name} {f.batch_size}" for f in FAMILIES.values() if f.batch_size)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"optimizer steps (default {DEFAULT_STEPS:,}{own_steps})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"global batch, split across torchrun's processes "
        f"(default {DEFAULT_BATCH}{own_batch})",
    )
    p.add_argument(
        "--block-size", type=int, default=512, help="training window (tokens, frames or notes)"
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4, help="end of the cosine schedule")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--transpose", type=int, default=6, help="augmentation: +-semitones")
    p.add_argument(
        "--bench-transpose",
        type=int,
        default=0,
        help="augmentation on polyphonic: benchmark files (all in C): +-semitones (default 0)",
    )
    p.add_argument(
        "--velocity", type=int, default=4, help="augmentation: +-velocity bins (of 32; default 4)"
    )
    p.add_argument(
        "--tempo",
        type=float,
        default=0.0,
        help="augmentation: time stretched by up to 1+TEMPO either way (MIDI-like; default 0)",
    )
    p.add_argument(
        "--keyboard-weight",
        type=float,
        default=32.0,
        help="music21: windows of its keyboard works this many times likelier (default 32)",
    )
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument(
        "--eval-pieces",
        type=int,
        default=16,
        help="valid pieces per periodic validation (0 = all; the end always scores all)",
    )
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="where to train (default auto: a GPU if there is one)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="mixed precision (default auto: bf16/fp16 on a GPU, fp32 on the CPU)",
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="model config, e.g. n_layer=4"
    )
    p.add_argument("--resume", action="store_true", help="continue OUT/ckpt.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "export", help="export a checkpoint to a verified, self-describing ONNX file"
    )
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--int8", action="store_true", help="also write an int8 dynamic-quantized copy")
    p.add_argument(
        "--fp16", action="store_true", help="also write a half-precision copy (transformer; GPUs)"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("continue", help="continue a MIDI file offline")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--model", default=None, help="ONNX model (default: the bundled one)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, default=None, help="length to add (default 20)")
    length.add_argument("--bars", type=float, default=None, help="length to add in bars")
    p.add_argument(
        "--variations", type=int, default=1, help="write K files OUT-1.mid ... OUT-K.mid"
    )
    p.add_argument("--wav", action="store_true", help="also render each OUT.mid to OUT.wav")
    _add_soundfont(p)
    p.add_argument(
        "--interpolate",
        default=None,
        metavar="OTHER.mid",
        help="musicvae: continue with a morph from the input's last phrase to OTHER's first",
    )
    p.add_argument("--steps", type=int, default=5, help="--interpolate: phrases of the morph")
    _add_sampling(p)
    _add_shaping(p)
    _add_provider(p)
    p.set_defaults(func=cmd_continue)

    p = sub.add_parser("render", help="render a MIDI file to a WAV file through a GM SoundFont")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="the WAV file to write")
    _add_soundfont(p)
    p.add_argument("--sample-rate", type=int, default=44100, help="Hz (default 44100)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("live", help="the daemon: listen on a MIDI port and answer")
    _add_live(p)
    p.set_defaults(func=cmd_live, studio=False)

    p = sub.add_parser("studio", help="the daemon with its studio, opened in the browser")
    _add_live(p)
    p.set_defaults(func=cmd_studio)

    p = sub.add_parser("ports", help="list MIDI ports for each available backend")
    p.add_argument("--backend", default=None, choices=["alsa", "jack", "coremidi", "winmm"])
    p.set_defaults(func=cmd_ports)

    p = sub.add_parser("eval", help="objective metrics, benchmark NLL and the family comparison")
    p.add_argument("--polyphonic", default=None, help="a benchmark file (JSB, Nottingham, ...)")
    p.add_argument("--split", default="valid", help="split of --polyphonic (default valid)")
    p.add_argument(
        "--model", default=None, help="ONNX model to score (alone: describe where it came from)"
    )
    p.add_argument(
        "--reconstruction", default=None, help="musicvae: reconstruction of DATA's valid phrases"
    )
    p.add_argument(
        "--multitrack", default=None, help="musegan: MuseGAN's metrics, the model beside DATA"
    )
    p.add_argument("--generated", default=None, help="folder of generated MIDI files")
    p.add_argument("--reference", default=None, help="folder of reference MIDI files")
    p.add_argument("--plots", default=None, help="write PNG plots into this folder")
    p.add_argument("--report", default=None, help="held-out MIDI folder: compare --models")
    p.add_argument("--models", nargs="*", default=None, help="ONNX files (default: all in runs/)")
    p.add_argument("--output", default="report.md", help="--report: Markdown table file")
    p.add_argument(
        "--heldout",
        default="test",
        choices=["test", "piano"],
        help="--report: the test split, or its keyboard works alone (music21's piano-only set)",
    )
    p.add_argument(
        "--note-lengths",
        default=None,
        help="folder of prompts: note lengths of --model's continuations (default model)",
    )
    p.add_argument("--seeds", default="1", help="--note-lengths: seeds, e.g. 1,2,3")
    p.add_argument("--seconds", type=float, default=20.0, help="--note-lengths: per continuation")
    p.add_argument(
        "--gan", default=None, help="ONNX model: C-RNN-GAN's measures and diversity vs the data"
    )
    p.add_argument("--gan-data", default="music21", help="--gan: the corpus compared with")
    p.add_argument("--gan-samples", type=int, default=64, help="--gan: samples of each set")
    p.add_argument("--json", default=None, help="also write the results as JSON")
    _add_provider(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="latency benchmarks: onnxruntime vs torch eager")
    p.add_argument("--model", default=None, help="ONNX model (default: the bundled one)")
    p.add_argument("--context", type=int, default=256, help="warm cache length (tokens)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--live", action="store_true", help="measure the daemon over JACK instead")
    p.add_argument("--phrases", type=int, default=200, help="--live: phrases to play")
    p.add_argument(
        "--load", type=int, default=0, help="--live: CPU-bound processes beside the daemon"
    )
    p.add_argument(
        "--soak", type=float, default=None, metavar="MINUTES", help="--live: play this long"
    )
    p.add_argument("--seed", type=int, default=0, help="--live: seed of the material")
    p.add_argument(
        "--disturb",
        type=float,
        default=0.15,
        help="--live: share of phrases after garbage, a flood, a lost note-off ... (0-1)",
    )
    p.add_argument("--silence-ms", type=float, default=400, help="--live: the daemon's silence")
    p.add_argument(
        "--jack-period",
        type=int,
        default=PERIOD_FRAMES,
        help="--live: frames per period of the dummy JACK server it starts (48 kHz)",
    )
    p.add_argument(
        "--jack-realtime",
        action="store_true",
        help="--live: start that server with realtime scheduling (needs rtprio rights; "
        "with --realtime, the default)",
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="--live: run the daemon with --realtime (its scheduler thread SCHED_FIFO); "
        "without it, --no-realtime",
    )
    p.add_argument("--json", default=None, help="also write the results as JSON")
    _add_provider(p)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except UserError as exc:
        print(f"antiphon: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("antiphon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
