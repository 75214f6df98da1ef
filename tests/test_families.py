"""Every registered family, through the shared path: train (tiny), export + verify, continue
a real file, and answer a phrase over real JACK ports. Registering a family is what puts it
here; a family without a tiny config fails ``test_every_family_has_a_tiny_config``."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path

import mido
import pytest

from antiphon.models.registry import FAMILIES
from tests.families import TINY

pytest.importorskip("torch")
_names = itertools.count()


def test_every_family_has_a_tiny_config() -> None:
    missing = sorted(set(FAMILIES) - set(TINY))
    assert not missing, f"registered families without a tiny test config: {missing}"


def _step_forms() -> list[str]:
    """Families whose tiny model has a single-step form (``export.cells``): their int8
    copies, quantized from that form, go through the same tests as a variant."""
    from antiphon.export.graphs import graph_for
    from antiphon.models.registry import family

    names = []
    for name in sorted(set(FAMILIES) & set(TINY)):
        graph = graph_for(name, family(name).build(TINY[name]["model"]))
        if getattr(graph, "step_graph", lambda: None)() is not None:
            names.append(name)
    return names


_trained: dict[str, tuple[Path, Path, object]] = {}  # family -> (run folder, .onnx, adapter)


@pytest.fixture(scope="session", params=[*sorted(FAMILIES), *(f"{n}:int8" for n in _step_forms())])
def family_model(request, synth_corpus, tmp_path_factory) -> tuple[str, Path]:
    """(family, exported and verified .onnx) — trained briefly on the synthetic corpus;
    "NAME:int8" is that model's int8 copy."""
    from antiphon.export.onnx_export import update_metadata
    from antiphon.export.quantize import quantize_export

    name, _, int8 = request.param.partition(":")
    if name not in TINY:
        pytest.fail(f"no tiny config for {name}")
    if name not in _trained:
        _trained[name] = _train_and_export(name, synth_corpus, tmp_path_factory)
    out, path, graph = _trained[name]
    if not int8:
        return name, path
    q = quantize_export(path, graph, out / f"{name}.int8.onnx")
    update_metadata(q, provenance={"quantization": {"int8_dynamic": {}}})
    return name, q


def _train_and_export(name: str, corpus: Path, tmp_path_factory) -> tuple[Path, Path, object]:  # type: ignore[no-untyped-def]
    from antiphon.models.train import TrainConfig, train
    from tests.checkpoints import export_verified

    out = tmp_path_factory.mktemp(f"fam-{name}")
    settings = {"eval_every": 10_000, "eval_pieces": 2, "transpose": 2, **TINY[name]}
    result = train(
        TrainConfig(arch=name, data=str(corpus), out=str(out), **settings), progress=False
    )
    path, graph = export_verified(Path(result["checkpoint"]), out / f"{name}.onnx")
    return out, path, graph


def test_export_is_verified(family_model) -> None:
    from antiphon.live.session import ModelFile

    name, path = family_model
    info = ModelFile.open(path).info
    assert info.family == name
    assert info.verification["greedy_identical"] is True
    assert info.verification["max_abs_diff"] <= info.verification["tolerance"]
    assert len(info.verification["cases"]) >= 3


def test_bench_compares_with_torch_eager(family_model) -> None:
    from antiphon.export.bench import bench

    _, path = family_model
    r = bench(path, context=16, steps=20, warmup=2)
    rows = ["onnxruntime", "torch eager", *(["torch eager int8"] if r.int8 else [])]
    assert [row.engine for row in r.rows] == rows
    assert r.int8 == path.name.endswith(".int8.onnx")
    assert all(row.p50_ms > 0 for row in r.rows) and r.speedup > 0


def test_continue_works(family_model, chorale, tmp_path) -> None:
    from antiphon.live.continuation import ContinueOptions, continue_file
    from antiphon.live.sampling import Sampling

    _, path = family_model
    out = tmp_path / "out.mid"
    (r,) = continue_file(chorale, out, path, ContinueOptions(seconds=20, sampling=Sampling(seed=1)))
    mid = mido.MidiFile(out)
    assert len(mid.tracks) == len(mido.MidiFile(chorale).tracks) + 1
    added = [m for m in mid.tracks[-1] if m.type in ("note_on", "note_off")]
    ons = sum(m.type == "note_on" and m.velocity > 0 for m in added)
    assert ons == r.notes and ons > 0
    assert len(added) == 2 * ons  # every note closed


@pytest.mark.jack
def test_live_answers_a_phrase(family_model, jack_server) -> None:
    from antiphon.live.harness import DaemonProcess, Player

    family_name, path = family_model
    name = f"antiphon-f{next(_names)}"
    daemon = DaemonProcess(["--model", str(path), "--silence-ms", "300", "--seed", "2"], name=name)
    player = Player(daemon_name=name, client=name + "-kbd")
    try:
        assert family_name in daemon.ready_line
        heard = None
        for _ in range(3):  # a tiny model may answer one call with silence; not three
            t_off = player.phrase((60, 64, 67, 72, 67, 64))
            heard = player.wait_for(
                lambda r, t=t_off: r.t > t and r.data[0] & 0xF0 == 0x90 and r.data[2] > 0, 4.0
            )
            if heard:
                break
        assert heard is not None, f"{family_name} never answered"
        time.sleep(0.5)
        daemon.signal(signal.SIGINT)
        assert daemon.wait(5) == 0
        time.sleep(0.05)
        assert player.hanging() == {}
    finally:
        daemon.kill()
        player.close()
