"""benchmarks/polyphonic.sh end to end on a tiny generated benchmark file (a few seconds)."""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "polyphonic.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _tiny_benchmark(path: Path) -> None:
    r = random.Random(0)

    def piece(n: int) -> list[list[int]]:
        return [sorted(r.sample(range(48, 80), r.randint(0, 3))) for _ in range(n)]

    path.write_text(
        json.dumps({"train": [piece(30) for _ in range(6)], "valid": [piece(20) for _ in range(3)]})
    )


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANTIPHON_BENCH_STEPS="5")
    # The antiphon command of this interpreter's environment, whatever is on PATH.
    env["ANTIPHON"] = f"{sys.executable} -m antiphon"
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_trains_exports_and_scores(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    _tiny_benchmark(data / "jsb-chorales.json")
    p = _run(str(data), str(out), "jsb-chorales")
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "jsb-chorales.onnx").stat().st_size > 0
    rows = (out / "summary.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["dataset", "valid_nll", "train_seconds", "steps"]
    name, nll, seconds, steps, _best = rows[1].split("\t")
    assert name == "jsb-chorales" and float(nll) > 0 and float(seconds) >= 0 and steps == "5"
    assert "jsb-chorales: valid NLL" in p.stdout


def test_unknown_dataset_is_one_clear_error(tmp_path: Path) -> None:
    p = _run(str(tmp_path), str(tmp_path / "out"), "jsb")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: unknown dataset 'jsb' (known: jsb-chorales nottingham piano-midi musedata)"
    ]
    assert not (tmp_path / "out").exists()


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    p = _run(str(tmp_path), str(tmp_path / "out"), "nottingham")
    assert p.returncode == 2
    assert p.stderr.strip() == f"error: missing benchmark file {tmp_path}/nottingham.json"
