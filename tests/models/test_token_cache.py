"""The token cache: written once as plain .npy files, read back memory-mapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from antiphon.models.corpus import resolve_corpus
from antiphon.models.dataset import tokenize_corpus
from antiphon.models.midi.tokenizer import Tokenizer


def test_a_cached_corpus_is_memory_mapped_and_equals_the_fresh_one(
    synth_corpus: Path, tmp_path: Path
) -> None:
    corpus = resolve_corpus(str(synth_corpus), cache_dir=tmp_path, progress=False)
    tok = Tokenizer.create()
    fresh = tokenize_corpus(corpus, tok, tmp_path / "tokens", progress=False, workers=1)
    cached = tokenize_corpus(corpus, tok, tmp_path / "tokens", progress=False)
    for split in ("train", "valid", "test"):
        assert isinstance(cached[split].tokens, np.memmap)  # mapped, not read whole
        assert not cached[split].tokens.flags.writeable
        np.testing.assert_array_equal(cached[split].tokens, fresh[split].tokens)
        np.testing.assert_array_equal(cached[split].offsets, fresh[split].offsets)
    assert cached.summary == fresh.summary and cached.failed == fresh.failed
    files = sorted(p.name.split(".", 1)[1] for p in (tmp_path / "tokens").iterdir())
    assert files == [
        "json",
        *(f"{s}.{w}.npy" for s in ("test", "train", "valid") for w in ("offsets", "tokens")),
    ]


def test_a_cache_without_its_summary_is_rebuilt(synth_corpus: Path, tmp_path: Path) -> None:
    corpus = resolve_corpus(str(synth_corpus), cache_dir=tmp_path, progress=False)
    tok = Tokenizer.create()
    first = tokenize_corpus(corpus, tok, tmp_path / "tokens", progress=False, workers=1)
    (summary,) = (tmp_path / "tokens").glob("*.json")
    summary.unlink()  # killed between the arrays and the summary, which is written last
    again = tokenize_corpus(corpus, tok, tmp_path / "tokens", progress=False, workers=1)
    np.testing.assert_array_equal(again["train"].tokens, first["train"].tokens)
    assert summary.exists()
