"""``antiphon eval --report DATA --heldout piano``: the keyboard works of the test split."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from antiphon.cli import build_parser
from antiphon.errors import UserError
from antiphon.export import report
from antiphon.models.corpus import Corpus, is_keyboard_file

CHORALE = Path(__file__).parents[1] / "data" / "bwv66.6.mid"


def _corpus(root: Path, keyboard: bool) -> Corpus:
    # Real MIDI under names the split rules place in test: a keyboard work and another piece.
    files = ("bach/bwv846.mid", "piece64.mid", "joplin/maple_leaf_rag.mid")
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CHORALE, root / f)
    marked = frozenset(f for f in files if keyboard and is_keyboard_file(f))
    return Corpus(name="music21", root=root, files=files, failed=0, keyboard=marked)


def test_piano_heldout_is_the_keyboard_works_of_the_test_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path, keyboard=True)
    monkeypatch.setattr(report, "resolve_corpus", lambda *a, **k: corpus)
    assert report.heldout_pieces("music21") == [
        tmp_path / "bach/bwv846.mid",
        tmp_path / "piece64.mid",
    ]
    assert report.heldout_pieces("music21", heldout="piano") == [tmp_path / "bach/bwv846.mid"]
    with pytest.raises(UserError, match="--heldout"):
        report.heldout_pieces("music21", heldout="valid")


def test_piano_heldout_of_a_corpus_without_keyboard_works_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path, keyboard=False)
    monkeypatch.setattr(report, "resolve_corpus", lambda *a, **k: corpus)
    with pytest.raises(UserError, match="no keyboard works"):
        report.heldout_pieces("music21", heldout="piano")


def test_the_cli_takes_heldout() -> None:
    args = build_parser().parse_args(["eval", "--report", "music21", "--heldout", "piano"])
    assert args.heldout == "piano"
    assert build_parser().parse_args(["eval", "--report", "music21"]).heldout == "test"
