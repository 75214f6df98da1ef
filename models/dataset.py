"""A corpus as token arrays: tokenized once (cached), split by file, sampled as windows.

Each piece becomes ``BOS tokens... EOS``; a split is the concatenation of its pieces plus
their offsets. Files that fail to read are skipped and counted, never fatal. Transposition
augmentation works on token ids (every pitch token has a neighbour a semitone away in the
vocabulary), so it costs nothing per step and works for every miditok tokenization.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from antiphon.atomic import atomic_file
from antiphon.models.augment import TempoStretch
from antiphon.models.corpus import SPLITS, Corpus
from antiphon.models.midi.notes import MidiFileError
from antiphon.models.midi.tokenizer import Tokenizer

PITCH_PREFIXES = ("NoteOn_", "NoteOff_", "Pitch_")
# 1: one .npz, read whole; 2: .npy per split, memory-mapped; 3: + which pieces are
# keyboard works (the format is part of the cache's key, so older caches are not read)
TOKEN_CACHE_FORMAT = 3


def progress_interval() -> float:
    """Seconds between progress-bar refreshes: live on a terminal, sparse in a log file."""
    import sys

    return 0.5 if sys.stderr.isatty() else 30.0


def cache_root() -> Path:
    """Where corpora and token arrays are cached (``ANTIPHON_CACHE`` overrides)."""
    env = os.environ.get("ANTIPHON_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("antiphon"))


@dataclass
class TokenSplit:
    tokens: np.ndarray  # (N,) int32, all pieces concatenated
    offsets: np.ndarray  # (P+1,) start of each piece, last = N
    keyboard: tuple[int, ...] = ()  # indices of the pieces that are keyboard works

    def piece_weights(self, keyboard_weight: float) -> np.ndarray | None:
        """Per piece, how much likelier a window from it is; None when all are equal."""
        if keyboard_weight == 1.0 or not self.keyboard:
            return None
        weights = np.ones(self.pieces)
        weights[list(self.keyboard)] = keyboard_weight
        return weights

    @property
    def pieces(self) -> int:
        return len(self.offsets) - 1

    def piece(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.piece(i) for i in range(self.pieces))


@dataclass
class TokenizedCorpus:
    splits: dict[str, TokenSplit]
    failed: int  # files that could not be read or held no notes
    summary: dict

    def __getitem__(self, split: str) -> TokenSplit:
        return self.splits[split]


def _encode_one(args: tuple[dict, str]) -> list[int] | None:
    params, path = args
    tok = _worker_tokenizer(json.dumps(params, sort_keys=True))
    try:
        return tok.encode_file(path)
    except MidiFileError:
        return None
    except Exception:  # a file miditok/symusic chokes on is skipped, like an unreadable one
        return None


_TOKENIZERS: dict[str, Tokenizer] = {}


def _worker_tokenizer(key: str) -> Tokenizer:
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = Tokenizer.from_params(json.loads(key))
    return _TOKENIZERS[key]


def corpus_cache_key(corpus: Corpus, *prefix: str) -> str:
    """A cache file's key: what it was made with (``prefix``: format, settings), the corpus
    folder, and each file's name and size, so a changed corpus never reads a stale cache."""
    h = hashlib.sha1()
    for part in prefix:
        h.update(part.encode())
    h.update(str(corpus.root.resolve()).encode())
    for f in corpus.files:
        p = corpus.root / f
        h.update(f.encode())
        h.update(str(p.stat().st_size if p.exists() else -1).encode())
    return h.hexdigest()[:16]


def _cache_key(corpus: Corpus, tokenizer: Tokenizer) -> str:
    params = json.dumps(tokenizer.to_params(), sort_keys=True)
    keyboard = json.dumps(sorted(corpus.keyboard))
    return corpus_cache_key(corpus, f"format {TOKEN_CACHE_FORMAT}", params, keyboard)


def tokenize_corpus(
    corpus: Corpus,
    tokenizer: Tokenizer,
    cache_dir: Path | None = None,
    *,
    progress: bool = True,
    workers: int | None = None,
) -> TokenizedCorpus:
    """Tokenize every file of a corpus once; later calls load the cached arrays."""
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"tokens-{_cache_key(corpus, tokenizer)}"
        if _meta_path(cache).exists():
            return load_token_cache(cache)
    params = tokenizer.to_params()
    splits: dict[str, TokenSplit] = {}
    failed = 0
    workers = workers or min(os.cpu_count() or 1, 4)
    keyboard_paths = {corpus.root / f for f in corpus.keyboard}
    for split in SPLITS:
        paths = corpus.split(split)
        jobs = ((params, str(p)) for p in paths)
        seqs = _run(jobs, len(paths), workers, progress, split)
        pieces = []
        keyboard = []
        for path, s in zip(paths, seqs, strict=True):
            if s is None or not s:
                failed += 1
            else:
                if path in keyboard_paths:
                    keyboard.append(len(pieces))
                pieces.append(np.asarray([tokenizer.bos, *s, tokenizer.eos], dtype=np.int32))
        lengths = [len(p) for p in pieces]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
        splits[split] = TokenSplit(tokens, offsets, tuple(keyboard))
    summary = {
        **corpus.summary(),
        "unreadable": failed,
        "tokens": {k: len(v.tokens) for k, v in splits.items()},
        "pieces": {k: v.pieces for k, v in splits.items()},
    }
    if corpus.keyboard:
        summary["keyboard_tokens"] = {
            k: int(sum(v.offsets[i + 1] - v.offsets[i] for i in v.keyboard))
            for k, v in splits.items()
        }
    result = TokenizedCorpus(splits, failed, summary)
    if cache is not None:
        _save(cache, result)
    return result


def _run(
    jobs: Iterable[tuple[dict, str]], total: int, workers: int, progress: bool, label: str
) -> list[list[int] | None]:
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        desc=f"tokenizing {label}",
        unit="file",
        disable=not progress,
        mininterval=progress_interval(),
    )
    out: list[list[int] | None] = []
    if workers <= 1 or total < 16:
        for job in jobs:
            out.append(_encode_one(job))
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for r in pool.map(_encode_one, jobs, chunksize=8):
                out.append(r)
                bar.update()
    bar.close()
    return out


def _meta_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".json")


def _array_path(cache: Path, split: str, what: str) -> Path:
    return cache.with_name(f"{cache.name}.{split}.{what}.npy")


def _save(cache: Path, tc: TokenizedCorpus) -> None:
    """Each split's tokens and offsets as plain ``.npy`` files (memory-mappable), then the
    summary: the summary is written last, so a cache without it is never read."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    for k, v in tc.splits.items():
        for what, array in (("tokens", v.tokens), ("offsets", v.offsets)):
            with atomic_file(_array_path(cache, k, what), what="token cache") as f:
                np.save(f, np.ascontiguousarray(array))
    keyboard = {k: list(v.keyboard) for k, v in tc.splits.items()}
    meta = json.dumps(
        {
            "format": TOKEN_CACHE_FORMAT,
            "failed": tc.failed,
            "summary": tc.summary,
            "keyboard": keyboard,
        }
    )
    with atomic_file(_meta_path(cache), what="token cache") as f:
        f.write(meta.encode())


def load_token_cache(cache: Path) -> TokenizedCorpus:
    """A token cache with every split's tokens memory-mapped read-only: a process reads the
    pages its windows touch, and the processes of one machine share them (the page cache),
    so a MAESTRO-sized corpus costs each training process almost nothing of its own."""
    meta = json.loads(_meta_path(cache).read_text())
    keyboard = meta.get("keyboard", {})
    splits = {
        s: TokenSplit(
            np.load(_array_path(cache, s, "tokens"), mmap_mode="r"),
            np.load(_array_path(cache, s, "offsets")),
            tuple(keyboard.get(s, ())),
        )
        for s in SPLITS
    }
    return TokenizedCorpus(splits, meta["failed"], meta["summary"])


# -- augmentation and sampling -------------------------------------------------------------
def pitch_shift_tables(vocab: list[str], max_shift: int) -> dict[int, np.ndarray]:
    """For each shift k: id -> id of the token k semitones away (-1 if out of range)."""
    ids = {t: i for i, t in enumerate(vocab)}
    tables = {}
    for k in range(-max_shift, max_shift + 1):
        table = np.arange(len(vocab), dtype=np.int32)
        for tok, i in ids.items():
            if tok.startswith(PITCH_PREFIXES):
                kind, value = tok.split("_")
                table[i] = ids.get(f"{kind}_{int(value) + k}", -1)
        tables[k] = table
    return tables


@dataclass
class Augment:
    """What the sampler varies per window beyond transposition (``models.augment``)."""

    velocity: dict[int, np.ndarray] | None = None  # shift in bins -> id table
    stretch: TempoStretch | None = None
    tempo: float = 0.0  # factors drawn log-uniformly in [1/(1+tempo), 1+tempo]

    def vocab_size(self) -> int:
        sizes = [len(t) for t in (self.velocity or {}).values()]
        if self.stretch is not None:
            sizes.append(len(self.stretch.ticks))
        return max(sizes, default=0)


class WindowSampler:
    """Random (block+1)-token windows from a split, transposed at random.

    ``weights`` (one per piece, e.g. ``TokenSplit.piece_weights``) make a window of a
    piece that many times likelier per token; ``augment`` varies dynamics and tempo. With
    neither, the stream of windows is the one earlier versions drew from the same seed.
    """

    def __init__(
        self,
        split: TokenSplit,
        block: int,
        seed: int,
        shifts: dict[int, np.ndarray] | None,
        *,
        weights: np.ndarray | None = None,
        augment: Augment | None = None,
    ) -> None:
        if len(split.tokens) < 2:
            raise ValueError("the training split holds no tokens")
        self.split, self.block = split, block
        self.rng = np.random.default_rng(seed)
        self.augment = augment or Augment()
        if not shifts:  # identity over every id a window can hold, augmented ones too
            size = max(int(split.tokens.max()) + 1, self.augment.vocab_size())
            shifts = {0: np.arange(size, dtype=np.int32)}
        self.shifts = shifts
        self.shift_keys = sorted(self.shifts)
        self.velocity_keys = sorted(self.augment.velocity or {})
        self._cum: np.ndarray | None = None
        if weights is not None:
            if len(weights) != split.pieces or (np.asarray(weights) <= 0).any():
                raise ValueError("one positive weight per piece is needed")
            lengths = np.diff(split.offsets)
            self._weights = np.asarray(weights, dtype=np.float64)
            self._cum = np.concatenate([[0.0], np.cumsum(lengths * self._weights)])

    def _start(self, n: int) -> int:
        toks = self.split.tokens
        if len(toks) <= n:
            return -1
        if self._cum is None:
            return int(self.rng.integers(0, len(toks) - n + 1))
        # A token drawn with probability proportional to its piece's weight; the window
        # starts there (clipped so that it fits, as the unweighted draw is).
        u = float(self.rng.random()) * self._cum[-1]
        piece = int(np.searchsorted(self._cum, u, side="right")) - 1
        piece = min(max(piece, 0), self.split.pieces - 1)
        within = int((u - self._cum[piece]) / self._weights[piece])
        return min(int(self.split.offsets[piece]) + within, len(toks) - n)

    def window(self, keep: bool = True) -> np.ndarray | None:
        """The next window; ``keep=False`` draws it (the stream moves on) without reading it."""
        toks = self.split.tokens
        n = self.block + 1
        start = self._start(n)
        k = self.shift_keys[int(self.rng.integers(0, len(self.shift_keys)))]
        v = 0
        if self.velocity_keys:
            v = self.velocity_keys[int(self.rng.integers(0, len(self.velocity_keys)))]
        factor = 1.0
        if self.augment.stretch is not None:
            span = math.log1p(self.augment.tempo)
            factor = math.exp(float(self.rng.uniform(-span, span)))
        if not keep:
            return None
        if start < 0:
            w = np.resize(toks, n)
        elif self.augment.stretch is not None and factor != 1.0:
            # Stretching changes the number of time shifts: stretch more than a window's
            # worth and cut; at the very end of the split, the window as it is.
            source = np.asarray(toks[start : start + 2 * n])
            stretched = self.augment.stretch.apply(source, factor)
            w = stretched[:n] if len(stretched) >= n else np.asarray(toks[start : start + n])
        else:
            w = np.asarray(toks[start : start + n])
        if v:
            assert self.augment.velocity is not None
            w = self.augment.velocity[v][w]
        shifted = self.shifts[k][w]
        return w if (shifted < 0).any() else shifted

    def batch(self, size: int, rows: range | None = None) -> np.ndarray:
        """``size`` windows of which ``rows`` are read (a rank's share of the global batch;
        every rank draws all ``size``, so all stay at the same place in the stream)."""
        rows = range(size) if rows is None else rows
        windows = [self.window(i in rows) for i in range(size)]
        return np.stack([w for w in windows if w is not None])  # (len(rows), block+1)
