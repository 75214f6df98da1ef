"""Bad input through the real command line: one clear line, non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mido
import pytest


def antiphon(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antiphon", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("antiphon: error: ")
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def empty_mid(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "empty.mid"
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    mid.save(path)
    return path


@pytest.fixture(scope="module")
def corrupt_mid(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "corrupt.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\xff\xff\x90")
    return path


def test_continue_missing_input(tiny_onnx, tmp_path) -> None:
    assert_one_line_error(
        antiphon(
            "continue",
            str(tmp_path / "nope.mid"),
            "-o",
            str(tmp_path / "o.mid"),
            "--model",
            str(tiny_onnx),
        ),
        "no such file",
    )


def test_continue_empty_midi(tiny_onnx, empty_mid, tmp_path) -> None:
    assert_one_line_error(
        antiphon(
            "continue", str(empty_mid), "-o", str(tmp_path / "o.mid"), "--model", str(tiny_onnx)
        ),
        "no notes",
    )


def test_continue_corrupt_midi(tiny_onnx, corrupt_mid, tmp_path) -> None:
    assert_one_line_error(
        antiphon(
            "continue", str(corrupt_mid), "-o", str(tmp_path / "o.mid"), "--model", str(tiny_onnx)
        ),
        "corrupt.mid",
    )
    assert not (tmp_path / "o.mid").exists()


def test_continue_with_a_non_onnx_model(chorale, corrupt_mid, tmp_path) -> None:
    assert_one_line_error(
        antiphon(
            "continue", str(chorale), "-o", str(tmp_path / "o.mid"), "--model", str(corrupt_mid)
        ),
        "not a loadable ONNX model",
    )


def test_continue_with_a_foreign_onnx_model(chorale, tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(
        helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]),
        tmp_path / "foreign.onnx",
    )
    assert_one_line_error(
        antiphon(
            "continue",
            str(chorale),
            "-o",
            str(tmp_path / "o.mid"),
            "--model",
            str(tmp_path / "foreign.onnx"),
        ),
        "without antiphon metadata",
    )


def test_continue_with_a_missing_model(chorale, tmp_path) -> None:
    assert_one_line_error(
        antiphon(
            "continue",
            str(chorale),
            "-o",
            str(tmp_path / "o.mid"),
            "--model",
            str(tmp_path / "none.onnx"),
        ),
        "no such model file",
    )


def test_train_with_an_unknown_data_path(tmp_path) -> None:
    assert_one_line_error(
        antiphon(
            "train",
            "--data",
            str(tmp_path / "no-such-corpus"),
            "--out",
            str(tmp_path / "run"),
            "--steps",
            "1",
        ),
        "no-such-corpus",
    )


def test_export_of_something_that_is_not_a_checkpoint(corrupt_mid, tmp_path) -> None:
    assert_one_line_error(
        antiphon("export", str(corrupt_mid), "-o", str(tmp_path / "m.onnx")), "checkpoint"
    )
    assert_one_line_error(
        antiphon("export", str(tmp_path / "none.pt"), "-o", str(tmp_path / "m.onnx")),
        "no such checkpoint",
    )


def test_continue_end_to_end_prints_what_it_made(tiny_onnx, chorale, tmp_path) -> None:
    proc = antiphon(
        "continue",
        str(chorale),
        "-o",
        str(tmp_path / "o.mid"),
        "--model",
        str(tiny_onnx),
        "--seconds",
        "30",
        "--seed",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert "30.0 s of music" in proc.stdout and "ms of compute" in proc.stdout
    mido.MidiFile(tmp_path / "o.mid")  # valid MIDI


def test_eval_describes_a_model(tiny_onnx) -> None:
    proc = antiphon("eval", "--model", str(tiny_onnx))
    assert proc.returncode == 0, proc.stderr
    assert "family transformer (tokens), context 96" in proc.stdout
    assert "greedy tokens identical: True" in proc.stdout
    assert_one_line_error(antiphon("eval"), "--model")


def test_eval_note_lengths_prints_the_table_and_writes_json(tiny_onnx, chorale, tmp_path) -> None:
    import json
    import shutil

    prompts = tmp_path / "prompts"
    prompts.mkdir()
    shutil.copy(chorale, prompts / chorale.name)
    out = tmp_path / "lengths.json"
    proc = antiphon(
        "eval", "--note-lengths", str(prompts), "--model", str(tiny_onnx),
        "--seeds", "1,2", "--seconds", "5", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "| note length (beats) | the prompts | the continuations |" in proc.stdout
    assert "2 continuations of 5 s" in proc.stdout
    assert json.loads(out.read_text())["runs"] == 2


def test_export_int8_of_a_family_it_cannot_quantize(tmp_path) -> None:
    """The note RNN's int8 agreement has no measure here: one line, and the fp32 file stays."""
    pytest.importorskip("torch")
    from antiphon.models.midi.notes import Grid
    from antiphon.models.registry import family
    from tests.checkpoints import save_checkpoint

    model = family("note-rnn").build({"hidden": 16})
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", "note-rnn", model, grid=Grid(8).to_dict())
    out = tmp_path / "notes.onnx"
    assert_one_line_error(antiphon("export", str(ckpt), "-o", str(out), "--int8"), "no int8 copy")
    assert out.is_file() and not (tmp_path / "notes.int8.onnx").exists()


def test_train_defaults_on_the_command_line_are_the_library_defaults() -> None:
    """``antiphon train`` with no options trains what ``TrainConfig()`` describes (the
    shipped default's settings): the torchrun tests compare the two runs option by option."""
    from dataclasses import fields

    from antiphon.cli import build_parser, train_config
    from antiphon.models.train import TrainConfig

    args = build_parser().parse_args(["train"])
    cli, library = train_config(args), TrainConfig()
    shared = [f.name for f in fields(TrainConfig) if f.name in vars(args) and f.name != "model"]
    assert {"velocity", "keyboard_weight", "transpose", "steps", "lr"} <= set(shared)
    for name in shared:
        assert getattr(cli, name) == getattr(library, name), name


def test_a_family_trains_with_its_own_steps_and_batch_unless_told_otherwise() -> None:
    from antiphon.cli import build_parser, train_config
    from antiphon.models.registry import family

    vae = family("musicvae")
    assert vae.steps and vae.batch_size  # musicvae's latent needs more than 1,400 x 8
    cfg = train_config(build_parser().parse_args(["train", "--arch", "musicvae"]))
    assert (cfg.steps, cfg.batch_size) == (vae.steps, vae.batch_size)
    told = build_parser().parse_args(["train", "--arch", "musicvae", "--steps", "50"])
    assert (train_config(told).steps, train_config(told).batch_size) == (50, vae.batch_size)
    gru = train_config(build_parser().parse_args(["train", "--arch", "pianoroll-gru"]))
    assert (gru.steps, gru.batch_size) == (1400, 8)


def test_set_reads_booleans_as_python_writes_them_and_numbers_as_numbers() -> None:
    from antiphon.cli import _overrides

    got = _overrides(["a=False", "b=true", "c=-2", "d=1e-3", "e=0.5", "f=name", "g=1.2.3"])
    # "False" as a string would be truthy: a switch asked off would stay on
    assert got == {"a": False, "b": True, "c": -2, "d": 1e-3, "e": 0.5, "f": "name", "g": "1.2.3"}
