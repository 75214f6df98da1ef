"""onnxruntime's provider: ``--provider auto|cpu|cuda``, chosen from what is installed.

This machine's onnxruntime has no CUDA provider: the choice is tested on provider lists
passed in, and the session that really opens is the CPU's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from antiphon.errors import UserError
from antiphon.live.session import ModelFile, choose_providers, provider_name
from tests.test_cli import antiphon, assert_one_line_error

GPU = ["CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_ONLY = ["AzureExecutionProvider", "CPUExecutionProvider"]


def test_auto_takes_cuda_where_onnxruntime_gpu_has_it() -> None:
    assert choose_providers("auto", GPU) == GPU
    assert choose_providers("auto", CPU_ONLY) == ["CPUExecutionProvider"]
    assert choose_providers("cuda", GPU) == GPU
    assert choose_providers("cpu", GPU) == ["CPUExecutionProvider"]


def test_cuda_asked_for_and_missing_names_the_fix() -> None:
    with pytest.raises(UserError, match=r"no CUDA provider .*antiphon\[gpu\].*--provider cpu"):
        choose_providers("cuda", CPU_ONLY)
    with pytest.raises(UserError, match="expected auto, cpu or cuda"):
        choose_providers("rocm", GPU)


def test_the_provider_is_named_as_the_option_names_it() -> None:
    assert provider_name(GPU) == "cuda"
    assert provider_name(["CPUExecutionProvider"]) == "cpu"
    assert provider_name(["TensorrtExecutionProvider", *GPU]) == "tensorrt"


def test_a_model_file_knows_its_provider(tiny_onnx: Path) -> None:
    assert ModelFile.open(tiny_onnx, provider="cpu").provider == "cpu"
    assert ModelFile.open(tiny_onnx).provider in ("cpu", "cuda")


def test_bench_prints_the_provider_and_cuda_missing_is_one_line(tiny_onnx: Path) -> None:
    done = antiphon("bench", "--model", str(tiny_onnx), "--steps", "10", "--provider", "cpu")
    assert done.returncode == 0, done.stderr
    assert "onnxruntime on cpu, torch eager on cpu" in done.stdout
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        proc = antiphon("eval", "--model", str(tiny_onnx), "--provider", "cuda")
        assert_one_line_error(proc, "--provider cuda", "antiphon[gpu]")
