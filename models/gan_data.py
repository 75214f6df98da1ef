"""The adversarial families' corpora: every file of a corpus read once into rows of numbers
(C-RNN-GAN: notes with velocity; MidiNet: bars of melody and chord), cached per corpus.

Each file goes through the family's ``read`` function (a module-level function, so a process
pool can run it) on the notes grid of ``notes_train``; an unreadable file is skipped and
counted. The split into train/valid/test is the corpus's (by file). The cache is one
``.npz`` per corpus, reader and grid, written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from antiphon.atomic import atomic_file
from antiphon.models.corpus import SPLITS, Corpus
from antiphon.models.dataset import corpus_cache_key, progress_interval
from antiphon.models.midi.notes import Grid, Note, read_performance
from antiphon.models.notes_train import NoteSplit, _Serial

Reader = Callable[[list[Note], int], np.ndarray]  # (notes, tpq) -> (rows, columns)


@dataclass
class RowCorpus:
    splits: dict[str, NoteSplit]  # rows of every piece concatenated, with piece offsets
    failed: int
    summary: dict

    def __getitem__(self, split: str) -> NoteSplit:
        return self.splits[split]


def _read_one(job: tuple[str, dict, str]) -> np.ndarray | None:
    reader, grid, path = job
    from antiphon.models.registry import resolve

    try:
        perf = read_performance(path, Grid.from_dict(grid))
        return resolve(reader)(perf.notes, perf.grid.tpq)
    except Exception:  # an unreadable file is skipped and counted, never fatal
        return None


def read_rows(
    corpus: Corpus,
    reader: str,
    columns: int,
    grid: Grid,
    cache_dir: Path | None,
    *,
    progress: bool = True,
) -> RowCorpus:
    """``reader`` ("module:function", a ``Reader``) over every file of ``corpus``."""
    key = corpus_cache_key(corpus, f"rows/1/{reader}", json.dumps(grid.to_dict(), sort_keys=True))
    cache = None if cache_dir is None else cache_dir / f"rows-{key}.npz"
    if cache is not None and cache.exists():
        z = np.load(cache)
        meta = json.loads(bytes(z["meta"]).decode())
        splits = {s: NoteSplit(z[f"{s}_rows"], z[f"{s}_offsets"]) for s in SPLITS}
        return RowCorpus(splits, meta["failed"], meta["summary"])
    from tqdm import tqdm

    splits, failed = {}, 0
    workers = min(os.cpu_count() or 1, 4)
    for split in SPLITS:
        jobs = [(reader, grid.to_dict(), str(p)) for p in corpus.split(split)]
        bar = tqdm(
            total=len(jobs),
            desc=f"reading {split}",
            unit="file",
            disable=not progress,
            mininterval=progress_interval(),
        )
        pieces = []
        with ProcessPoolExecutor(workers) if len(jobs) >= 16 and workers > 1 else _Serial() as pool:
            for rows in pool.map(_read_one, jobs, chunksize=8):
                bar.update()
                if rows is None or len(rows) == 0:
                    failed += 1
                else:
                    pieces.append(rows)
        bar.close()
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
        rows = np.concatenate(pieces) if pieces else np.zeros((0, columns), dtype=np.float32)
        splits[split] = NoteSplit(rows, offsets)
    summary = {
        **corpus.summary(),
        "unreadable": failed,
        "rows": {k: len(v.notes) for k, v in splits.items()},
        "pieces": {k: v.pieces for k, v in splits.items()},
    }
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for k, v in splits.items():
            arrays[f"{k}_rows"], arrays[f"{k}_offsets"] = v.notes, v.offsets
        arrays["meta"] = np.frombuffer(
            json.dumps({"failed": failed, "summary": summary}).encode(), dtype=np.uint8
        )
        with atomic_file(cache, what="GAN corpus cache") as f:
            np.savez(f, **arrays)
    return RowCorpus(splits, failed, summary)
