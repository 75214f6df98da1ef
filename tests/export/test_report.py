"""``antiphon eval --report``: the comparison table, on a model really trained on the
synthetic corpus and that corpus's own held-out split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from antiphon.errors import UserError
from antiphon.export.report import build_report
from antiphon.live.session import ModelFile


def test_report_scores_held_out_pieces_and_writes_a_table(
    trained_onnx: Path, synth_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.md"
    result = build_report(str(synth_corpus), models=[str(trained_onnx)], out=out)
    (row,) = result["rows"]
    vocab = len(ModelFile.open(trained_onnx).info.vocab)
    assert result["pieces"] > 0 and row["nll_tokens"] > 100
    assert 0 < row["nll"] < math.log(vocab)  # trained: better than a uniform guess
    assert 0 <= row["mean_oa"] <= 1 and set(row["oa"]) >= {"pitch_class_entropy"}
    assert row["params"] > 0 and row["step_ms"] > 0 and row["speedup"] > 0
    table = out.read_text()
    assert f"| {trained_onnx.name} | transformer |" in table
    assert "| notes > 8 beats |" in table and row["lengths"]["notes"] > 0
    assert 0 <= row["lengths"]["over"] <= 1 and "long_note_time" in row["oa"]
    assert json.loads(out.with_suffix(".json").read_text())["rows"][0]["nll"] == row["nll"]


def test_report_without_models_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no runs/ here
    with pytest.raises(UserError, match="no models"):
        build_report("music21", models=None, out=tmp_path / "r.md")


def test_places_walk_through_a_long_piece_a_prompt_and_a_continuation_apart() -> None:
    from antiphon.export.report import CONTINUE_BEATS, GRID, PROMPT_BEATS, places
    from antiphon.models.midi.notes import read_performance

    piece = Path(__file__).resolve().parents[1] / "data" / "palestrina-agnus-01.mid"
    beats = read_performance(piece, GRID).end / GRID.tpq
    span = PROMPT_BEATS + CONTINUE_BEATS
    assert places([piece]) == [(piece, 0.0)]
    many = places([piece], per_piece=100)
    assert [at for _, at in many] == [k * span for k in range(int(beats // span))]
    assert len(many) >= 2  # the test piece is long enough to show the walk
    assert places([piece], per_piece=2) == many[:2]
