"""Piano-roll export parity (both cells, both heads) and ``antiphon eval --polyphonic``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from antiphon.errors import UserError  # noqa: E402
from antiphon.export.frames_graph import PianoRollGraph  # noqa: E402
from antiphon.export.polyeval import evaluate_polyphonic  # noqa: E402
from antiphon.export.verify import ParityError, verify  # noqa: E402
from antiphon.live.session import ModelFile  # noqa: E402
from antiphon.models.frames_train import rolls_nll  # noqa: E402
from antiphon.models.midi.notes import Grid  # noqa: E402
from antiphon.models.midi.polyphonic import benchmark_split, from_roll  # noqa: E402
from antiphon.models.registry import family  # noqa: E402
from tests.checkpoints import export_verified, save_checkpoint  # noqa: E402

JSB = Path(__file__).resolve().parents[3] / "shared" / "data" / "polyphonic" / "jsb-chorales.json"
TINY = {"n_hidden": 24, "nade_hidden": 12, "seq_len": 32, "frame_ticks": 2, "dropout": 0.0}


def tiny_model(cell: str, head: str, seed: int = 0):  # type: ignore[no-untyped-def]
    """A random tiny model whose keys are not all silent (key biases spread around 0), so
    greedy rollouts play chords and parity is tested on real decisions."""
    torch.manual_seed(seed)
    model = family(f"pianoroll-{cell}").build({**TINY, "head": head})
    with torch.no_grad():
        model.visible.bias.normal_(-1.5, 1.0)
    return model.eval()


def export_tiny(folder: Path, cell: str, head: str, seed: int = 0) -> tuple[Path, object]:
    """(verified .onnx, torch model) of a tiny random piano-roll model."""
    model = tiny_model(cell, head, seed)
    ckpt = folder / f"{cell}-{head}.pt"
    save_checkpoint(ckpt, f"pianoroll-{cell}", model, grid=Grid(8).to_dict())
    path, _ = export_verified(ckpt, folder / f"{cell}-{head}.onnx")
    return path, model


CASES = [(c, h) for c in ("gru", "lstm") for h in ("sigmoid", "nade")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{c}-{h}" for c, h in CASES])
def exported(request, tmp_path_factory) -> tuple[Path, object, str, str]:
    cell, head = request.param
    path, model = export_tiny(tmp_path_factory.mktemp(f"{cell}-{head}"), cell, head)
    return path, model, cell, head


def test_export_parity_and_greedy_rollout(exported) -> None:
    path, model, cell, head = exported
    info = ModelFile.open(path).info
    assert info.family == f"pianoroll-{cell}" and info.representation == "frames"
    assert info.config["head"] == head and info.config["frame_ticks"] == 2
    assert all(p.axis == -1 for p in info.signature.state)  # fixed-size recurrent state
    assert len(info.signature.state) == (1 if cell == "gru" else 2)
    v = info.verification
    assert v["greedy_identical"] and v["max_abs_diff"] <= v["tolerance"]
    assert len(v["cases"]) >= 3
    frames = PianoRollGraph(model).rollout(ModelFile.open(path).run, 16)
    assert any(frames), "the rollout should play some keys"
    if head == "nade":  # chords, not lone keys
        assert max(len(f) for f in frames) >= 2


def test_verification_catches_a_wrong_head(exported) -> None:
    path, _, cell, head = exported
    broken = tiny_model(cell, head)
    with torch.no_grad():
        broken.visible.weight.add_(0.5)
    with pytest.raises(ParityError):
        verify(PianoRollGraph(broken), ModelFile.open(path))


def test_the_torch_model_rebuilds_from_the_file(exported) -> None:
    from antiphon.export.reload import torch_from_onnx

    path, model, _, _ = exported
    rebuilt = torch_from_onnx(path)
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v), k


def _write_benchmark(path: Path, rng: np.random.Generator) -> dict:
    """A tiny file in the benchmark format, with an oddly named split."""

    def piece(n: int) -> list[list[int]]:
        roll = (rng.random((n, 88)) < 0.05).astype(np.uint8)
        roll[rng.integers(0, n)] = 0  # a silent frame
        return from_roll(roll)

    data = {
        "source": "synthetic",
        "train": [piece(9)],
        "heldout": [piece(n) for n in (1, 5, 37, 600)],
    }
    path.write_text(json.dumps(data))
    return data


def test_polyeval_scores_any_split_through_onnxruntime(exported, tmp_path) -> None:
    path, model, _, head = exported
    bench = tmp_path / "tiny.json"
    data = _write_benchmark(bench, np.random.default_rng(3))
    result = evaluate_polyphonic(bench, "heldout", path)
    json.dumps(result)  # JSON-native
    assert result["frames"] == 1 + 5 + 37 + 600 and result["pieces"] == 4
    assert result["split"] == "heldout" and result["head"] == head
    # the same number from torch (piece by piece from the empty state, frames > CHUNK)
    nll, frames = rolls_nll(model, benchmark_split(bench, "heldout"))
    assert frames == result["frames"]
    assert result["nll"] == pytest.approx(nll, rel=1e-5)
    # and by hand for the first piece, conditionals computed one frame at a time
    roll = torch.tensor(benchmark_split(bench, "heldout")[1], dtype=torch.float32)[None]
    state, total = None, 0.0
    with torch.no_grad():
        for t in range(roll.shape[1]):
            f_nll, state = model.frame_nll(roll[:, t : t + 1], state)
            total += float(f_nll)
    single = evaluate_polyphonic(_one_piece(tmp_path, data["heldout"][1]), "x", path)
    assert single["nll"] * 5 == pytest.approx(total, rel=1e-5)


def _one_piece(folder: Path, piece: list[list[int]]) -> Path:
    path = folder / "one.json"
    path.write_text(json.dumps({"x": [piece]}))
    return path


def test_polyeval_errors_are_one_line(exported, tiny_onnx, tmp_path) -> None:
    path = exported[0]
    bench = tmp_path / "tiny.json"
    _write_benchmark(bench, np.random.default_rng(0))
    with pytest.raises(UserError, match="no split 'valid'; it has: heldout, train"):
        evaluate_polyphonic(bench, "valid", path)
    with pytest.raises(UserError, match="does not score piano-roll"):
        evaluate_polyphonic(bench, "heldout", tiny_onnx)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"valid": [[[12]]]}))
    with pytest.raises(UserError, match=r"pitch outside 21\.\.108"):
        evaluate_polyphonic(bad, "valid", path)


@pytest.mark.skipif(not JSB.is_file(), reason="the shared benchmark data is not here")
def test_jsb_valid_split(exported) -> None:
    path, model, _, _ = exported
    result = evaluate_polyphonic(JSB, "valid", path)
    assert (result["pieces"], result["frames"]) == (76, 4602)  # as the data README says
    nll, _ = rolls_nll(model, benchmark_split(JSB, "valid"))
    assert result["nll"] == pytest.approx(nll, rel=1e-5)
    assert 0 < result["nll"] < 88 * np.log(2) * 2  # a random model: a few bits per key at most


@pytest.mark.parametrize("head", ["sigmoid", "nade"])
def test_export_int8_quantizes_the_piano_roll_gru_step_by_step(head, tmp_path) -> None:
    """``antiphon export --int8`` on a piano-roll GRU: the one-step form with int8 matrices,
    scored against fp32 on the valid frames of the data the checkpoint names; polyeval
    scores the int8 file (a step a run) close to fp32."""
    from tests.test_cli import antiphon

    path, _ = export_tiny(tmp_path, "gru", head)
    ckpt = path.with_suffix(".pt")
    rng = np.random.default_rng(5)
    data = {"train": [], "valid": [from_roll(rng.random((n, 88)) < 0.05) for n in (9, 23)]}
    bench_file = tmp_path / "b.json"
    bench_file.write_text(json.dumps(data))
    c = torch.load(ckpt, weights_only=False)
    c["train_config"] = {"data": f"polyphonic:{bench_file}"}
    torch.save(c, ckpt)
    out = tmp_path / "m.onnx"
    proc = antiphon("export", str(ckpt), "-o", str(out), "--int8")
    assert proc.returncode == 0, proc.stderr
    assert (
        "greedy frames identical" in proc.stdout
        and "32 valid frames of polyphonic:b.json" in proc.stdout
    )
    int8 = out.with_name("m.int8.onnx")
    mf = ModelFile.open(int8)
    assert mf.info.signature.inputs["frames"] == ["batch", 1, 88]
    assert mf.info.verification["greedy_identical"] is True
    q = mf.info.provenance["quantization"]["int8_dynamic"]
    assert q["unit"] == "frame" and q["eval_tokens"] == 32 and q["teacher_forced_agreement"] > 0.9
    a = evaluate_polyphonic(bench_file, "valid", out)
    b = evaluate_polyphonic(bench_file, "valid", int8)
    assert a["frames"] == b["frames"] == 32
    assert abs(a["nll"] - b["nll"]) < 0.02 * a["nll"]
    assert abs(q["nll_fp32"] - a["nll"]) < 1e-4  # the report's NLL is polyeval's
