"""Training corpora: a folder of MIDI files, or the music21 corpus converted to MIDI once.

``resolve_corpus(data)`` turns the ``--data`` argument into a ``Corpus``: a root folder and
the sorted MIDI files under it. Two forms:

- ``"music21"`` or ``"music21:bach,palestrina"``: the scores that ship inside the music21
  package (all collections, or the named top-level folders), converted to MIDI in parallel
  into the user's cache directory. Conversion is incremental: a collection that finished
  (``manifest.json``) is never parsed again, and an interrupted collection resumes from its
  journal. The cache is keyed on the sources' content, not on music21's version: an
  upgrade that ships the same files reuses it, a changed file is converted again. Sources
  music21 cannot convert are skipped and counted. Largest work first, across all cores;
  the progress bar's remaining time is weighted by each source's expected cost.
- anything else: a directory searched recursively for ``.mid``/``.midi`` files (any case).
  Nothing is copied and the MIDI files are not parsed here; the tokenizer skips and counts
  the ones it cannot read.

Splits are by file and depend only on a file's path relative to the root, so they agree
across machines, runs and subsets of the corpus. The keyboard works in music21's corpus
(``KEYBOARD_WORKS``) have a split rule of their own with a third of them held out, so
that a piano-only test set (``Corpus.split("test", keyboard=True)``) exists at all.

music21, tqdm and platformdirs are imported only by the functions that need them: importing
this module stays cheap and never pulls in torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from antiphon.atomic import append_text, atomic_path, read_lines, write_text
from antiphon.errors import UserError

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

SPLITS = ("train", "valid", "test")
_SPLIT_BOUNDS = (90, 95)  # percent: train below 90, valid below 95, test the rest
# Eleven works: 5 % would hold out none or one. A third goes to test, none to valid.
_KEYBOARD_BOUNDS = (67, 67)
MIDI_SUFFIXES = (".mid", ".midi")

# The solo keyboard works music21's corpus holds (checked part by part in music21 10.5:
# its Beethoven, Haydn, Mozart K. 80-458 and Robert Schumann are string quartets, its
# Schubert and Dichterliebe songs). Stems relative to the corpus root; absent ones are
# simply not there.
KEYBOARD_WORKS = frozenset(
    {
        "bach/bwv846",  # The Well-Tempered Clavier I, Prelude in C
        "chopin/mazurka06-2",
        "cpebach/h186",
        "joplin/maple_leaf_rag",
        "mozart/k545/movement1_exposition",
        "schoenberg/opus19/movement2",
        "schoenberg/opus19/movement6",
        "schumann_clara/polonaise_op1n1",
        "schumann_clara/polonaise_op1n2",
        "schumann_clara/polonaise_op1n3",
        "schumann_clara/polonaise_op1n4",
    }
)

# Bump when conversion changes, so caches written by older code are rebuilt, not reused.
# 2: antiphon's own score -> MIDI (models/scoremidi.py); keyed on the sources' content.
# 3: ties joined in one linear pass (a tie no note stops ends on its next note).
_CACHE_FORMAT = 3
# Roman-numeral analyses are block-chord reductions of pieces the corpus already holds as
# scores; converting them would duplicate those pieces as chord pads.
_SKIPPED_SOURCES = frozenset({".rntxt"})
# When one piece ships in several encodings (bach/bwv277.krn and .mxl), only the first of
# these is converted: one MIDI file per piece, so a piece cannot sit in train and test.
_PREFERRED_SOURCES = (".mxl", ".musicxml", ".xml", ".krn", ".abc")
_MAX_ERROR = 200  # characters of an exception message kept in a manifest
# what converting one source gives: its MIDI files, its errors, the CPU and the wall
# seconds it took
Converted = tuple[list[str], list[str], float, float]


def split_of(relpath: str, *, keyboard: bool = False) -> str:
    """The split of a file, from the sha1 of its posix path relative to the corpus root
    (``keyboard``: the file is a keyboard work, which has bounds of its own)."""
    digest = hashlib.sha1(relpath.encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    bounds = _KEYBOARD_BOUNDS if keyboard else _SPLIT_BOUNDS
    if bucket < bounds[0]:
        return "train"
    if bucket < bounds[1]:
        return "valid"
    return "test"


def is_keyboard_file(relpath: str) -> bool:
    """Whether a converted music21 file (``stem.mid`` or an opus's ``stem-N.mid``) is one
    of ``KEYBOARD_WORKS``."""
    stem = relpath.removesuffix(".mid")
    return stem in KEYBOARD_WORKS or stem.rpartition("-")[0] in KEYBOARD_WORKS


@dataclass(frozen=True)
class Corpus:
    name: str  # "music21", "music21:bach,palestrina" or a directory's resolved path
    root: Path  # the folder holding the MIDI files
    files: tuple[str, ...]  # posix paths relative to root, sorted
    failed: int  # music21 sources (or single tunes of an opus) that could not be converted
    keyboard: frozenset[str] = frozenset()  # the files that are keyboard works

    def split_of(self, relpath: str) -> str:
        return split_of(relpath, keyboard=relpath in self.keyboard)

    def split(self, name: str, *, keyboard: bool = False) -> list[Path]:
        """Absolute paths of the files in split ``name`` (one of ``SPLITS``); ``keyboard``:
        only the keyboard works among them (the piano-only set)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return [
            self.root / f
            for f in self.files
            if self.split_of(f) == name and (not keyboard or f in self.keyboard)
        ]

    def summary(self) -> dict[str, Any]:
        """JSON-native provenance for checkpoints: name, files per split, failures."""
        counts = dict.fromkeys(SPLITS, 0)
        keys = dict.fromkeys(SPLITS, 0)
        for f in self.files:
            counts[self.split_of(f)] += 1
            keys[self.split_of(f)] += f in self.keyboard
        out: dict[str, Any] = {"name": self.name, "files": counts, "failed": self.failed}
        if self.keyboard:
            out["keyboard_files"] = keys
        return out

    def describe(self) -> str:
        """The one-line summary the CLI prints after resolving a corpus."""
        counts = self.summary()["files"]
        per_split = ", ".join(f"{split} {counts[split]}" for split in SPLITS)
        line = f"{self.name}: {len(self.files)} MIDI files ({per_split})"
        if self.failed:
            line += f"; {self.failed} music21 pieces could not be converted and were skipped"
        return line


def resolve_corpus(
    data: str = "music21",
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> Corpus:
    """The corpus named by ``data``; builds the music21 MIDI cache first if needed.

    ``cache_dir`` defaults to ``platformdirs.user_cache_dir("antiphon")``; ``workers``
    (processes converting music21 sources) defaults to ``os.cpu_count()``.
    """
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if data == "music21" or data.startswith("music21:"):
        selection = None if data == "music21" else data.partition(":")[2]
        return _music21_corpus(selection, cache_dir, progress, workers or os.cpu_count() or 1)
    return _directory_corpus(data)


# --- a folder of MIDI files ---------------------------------------------------------------


def _directory_corpus(data: str) -> Corpus:
    root = Path(data).expanduser()
    if root.is_file():
        raise UserError(
            f"--data {data} is a file; pass the folder that holds your .mid/.midi files, "
            "or 'music21' for the corpus bundled with music21"
        )
    if not root.is_dir():
        raise UserError(
            f"--data {data}: no such directory; pass a folder of .mid/.midi files, or "
            "'music21' (optionally 'music21:bach,palestrina') for the corpus bundled with music21"
        )
    root = root.resolve()
    files = tuple(sorted(_find_midi(root)))
    if not files:
        raise UserError(
            f"--data {data}: no .mid or .midi files under {root}; point --data at the folder "
            "that holds them (subfolders are searched)"
        )
    return Corpus(name=str(root), root=root, files=files, failed=0)


def _find_midi(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden folders (.git, .cache) hold no corpus, and hidden files include macOS
        # "._name.mid" resource forks, which are not MIDI at all.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(MIDI_SUFFIXES):
                yield (rel / f).as_posix()


# --- the music21 corpus -------------------------------------------------------------------


def _music21_corpus(
    selection: str | None, cache_dir: Path | None, progress: bool, workers: int
) -> Corpus:
    try:
        from music21 import common, corpus
    except ImportError:
        raise UserError(
            "--data music21 needs the music21 package: pip install 'antiphon[train]', "
            "or pass --data DIR with a folder of MIDI files"
        ) from None
    available = _music21_sources(Path(common.getCorpusFilePath()), corpus.getPaths())
    chosen = sorted(available) if selection is None else _choose(selection, available)
    if cache_dir is None:
        import platformdirs

        cache_dir = Path(platformdirs.user_cache_dir("antiphon"))
    # One folder for every music21 version and selection: "music21:bach" and "music21"
    # reuse the same bach files, which therefore keep the same split; each collection's
    # manifest says which sources (by content) it was converted from.
    out_root = Path(cache_dir).expanduser() / "corpora" / "music21"
    files, failures = _build(out_root, {c: available[c] for c in chosen}, progress, workers)
    name = "music21" if selection is None else "music21:" + ",".join(chosen)
    if not files:
        raise UserError(
            f"--data {name}: music21 could not convert any of its {failures} pieces; "
            "try other collections, or pass --data DIR with a folder of MIDI files"
        )
    keyboard = frozenset(f for f in files if is_keyboard_file(f))
    return Corpus(
        name=name, root=out_root, files=tuple(sorted(files)), failed=failures, keyboard=keyboard
    )


def _music21_sources(m21_root: Path, paths: list[Path]) -> dict[str, dict[str, str]]:
    """Per collection (top-level corpus folder): output stem -> absolute source path."""
    by_stem: dict[str, list[Path]] = {}
    for path in paths:
        if path.suffix.lower() in _SKIPPED_SOURCES:
            continue
        stem = path.relative_to(m21_root).with_suffix("").as_posix()
        by_stem.setdefault(stem, []).append(path)
    collections: dict[str, dict[str, str]] = {}
    for stem, candidates in sorted(by_stem.items()):
        best = min(candidates, key=_source_rank)
        collections.setdefault(stem.split("/", 1)[0], {})[stem] = str(best)
    return collections


def _source_rank(path: Path) -> tuple[int, str]:
    suffix = path.suffix.lower()
    known = suffix in _PREFERRED_SOURCES
    return (_PREFERRED_SOURCES.index(suffix) if known else len(_PREFERRED_SOURCES), suffix)


def _choose(selection: str, available: dict[str, dict[str, str]]) -> list[str]:
    # Folder names are camelCase ("essenFolksong"); accept any case on the command line.
    by_lower = {name.lower(): name for name in available}
    wanted = [w.strip() for w in selection.split(",") if w.strip()]
    unknown = [w for w in wanted if w.lower() not in by_lower]
    if unknown or not wanted:
        what = f"unknown collection(s) {', '.join(unknown)}" if unknown else "no collection"
        raise UserError(
            f"--data music21:{selection}: {what}; choose from: {', '.join(sorted(available))} "
            "(or plain 'music21' for all of them)"
        )
    return sorted({by_lower[w.lower()] for w in wanted})


# --- incremental, parallel conversion -----------------------------------------------------


def source_digest(source: str) -> str:
    """What a converted file is keyed on: its source's content (sha1), not its name or
    music21's version."""
    return hashlib.sha1(Path(source).read_bytes()).hexdigest()


def _collection_key(sources: dict[str, str], digests: dict[str, str]) -> str:
    h = hashlib.sha1(str(_CACHE_FORMAT).encode())
    for stem in sorted(sources):
        h.update(f"{stem}\0{digests[stem]}\n".encode())
    return h.hexdigest()


def _build(
    out_root: Path, collections: dict[str, dict[str, str]], progress: bool, workers: int
) -> tuple[list[str], int]:
    """Convert what is not converted yet; return all files (relative to out_root), failures.

    Each finished source is appended to its collection's ``journal.jsonl`` as it completes;
    once all are in, the collection's ``manifest.json`` is written atomically and the
    journal removed. A finished collection whose sources have not changed is read from its
    manifest, never re-parsed.
    """
    finished: dict[str, dict[str, Any]] = {}
    journals: dict[str, dict[str, dict[str, Any]]] = {}
    keys: dict[str, str] = {}
    todo: list[tuple[str, str, str, str]] = []  # (collection, stem, source, digest)
    for coll, sources in collections.items():
        digests = {stem: source_digest(src) for stem, src in sources.items()}
        keys[coll] = _collection_key(sources, digests)
        manifest = _read_manifest(out_root, coll, keys[coll])
        if manifest is not None:
            finished[coll] = manifest
            continue
        # What an older manifest of this collection (another music21 release, a changed
        # source) and the journal of an interrupted build hold is kept for every source
        # whose content is unchanged; the rest is converted again.
        known = {
            **_manifest_entries(out_root, coll),
            **_read_journal(out_root / coll / "journal.jsonl"),
        }
        journals[coll] = {s: e for s, e in known.items() if e.get("digest") == digests.get(s)}
        todo += [
            (coll, s, src, digests[s]) for s, src in sources.items() if s not in journals[coll]
        ]

    if todo:
        from antiphon.models.progress import WorkBar, conversion_cost, cost_kind, probes_first

        # Largest first: the last source to finish is then a small one, so neither core
        # idles at the end while the other parses a string quartet; but a few of each kind
        # first, so the remaining time is calibrated on every kind from the start.
        costs = {(c, s): conversion_cost(src) for c, s, src, _ in todo}
        kind = {(c, s): cost_kind(src) for c, s, src, _ in todo}
        todo.sort(key=lambda job: -costs[job[0], job[1]])
        todo = probes_first(todo, lambda job: kind[job[0], job[1]])
        kinds: dict[str, float] = {}
        for key, cost in costs.items():
            kinds[kind[key]] = kinds.get(kind[key], 0.0) + cost
        done = [e for j in journals.values() for e in j.values()]
        total_sources = len(done) + len(todo)
        bar = WorkBar(
            total_sources=total_sources,
            done_sources=len(done),
            work=sum(costs.values()),
            kinds=kinds,
            workers=min(workers, len(todo)),
            desc="music21 -> MIDI",
            enabled=progress,
            failed=sum(len(e["errors"]) for e in done),
        )

        def record(coll: str, stem: str, digest: str, result: Converted) -> None:
            files, errors, seconds, wall = result
            entry = {
                "stem": stem,
                "digest": digest,
                "files": files,
                "errors": errors,
                "seconds": round(seconds, 3),  # CPU: where a build's time goes, per source
            }
            # One fsynced line per source, after its MIDI files are complete: an
            # interrupted build loses only the sources still running, and a torn last
            # line is dropped on resume.
            journal = out_root / coll / "journal.jsonl"
            append_text(journal, json.dumps(entry) + "\n", what="corpus journal")
            journals[coll][stem] = entry
            bar.advance(
                costs[coll, stem],
                failed=len(errors),
                kind=kind[coll, stem],
                actual=seconds,
                wall=wall,
            )

        with bar:
            _run(todo, out_root, workers, record)

    # Every source of these collections is journaled now (also after an interrupt that
    # fell between the last source and the manifest).
    for coll, entries in journals.items():
        finished[coll] = _finish(out_root, coll, collections[coll], entries, keys[coll])

    files = [f for coll in collections for f in finished[coll]["files"]]
    failed = sum(len(finished[coll]["failures"]) for coll in collections)
    return files, failed


def _run(
    todo: list[tuple[str, str, str, str]],
    out_root: Path,
    workers: int,
    record: Callable[[str, str, str, Converted], None],
) -> None:
    if workers == 1 or len(todo) <= 1:
        # In-process: no start-up cost for tiny jobs, and the single-worker path is plain.
        for coll, stem, source, digest in todo:
            record(coll, stem, digest, _convert(source, str(out_root), stem))
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(min(workers, len(todo)), initializer=_ignore_sigint)
    with pool:
        # Submitted in order (largest first); the pool hands them out as workers free up.
        futures = {
            pool.submit(_convert, source, str(out_root), stem): (coll, stem, digest)
            for coll, stem, source, digest in todo
        }
        try:
            for future in as_completed(futures):
                record(*futures[future], future.result())
        except BaseException:
            # Ctrl-C (or a bug): drop queued sources and stop the running ones now, rather
            # than wait up to a minute for a large opus; the journal keeps what finished.
            pool.shutdown(wait=False, cancel_futures=True)
            _terminate_workers(pool)
            raise


def _ignore_sigint() -> None:
    # Ctrl-C goes to the whole process group; only the parent should react (and stop the
    # workers), rather than every worker printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    # Before 3.14 the executor has no public way to stop a running task.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def _convert(source: str, out_root: str, stem: str) -> Converted:
    """Parse one music21 source and write one MIDI file per score: (files, errors, CPU and
    wall seconds it took, which calibrate the progress bar's remaining time).

    Runs in a worker process. Never raises for a bad source: music21 raises many kinds of
    exceptions on corpus files it cannot handle, and each only costs that source or tune.
    """
    started, wall = time.process_time(), time.perf_counter()
    files, errors = _convert_scores(source, out_root, stem)
    return files, errors, time.process_time() - started, time.perf_counter() - wall


def _convert_scores(source: str, out_root: str, stem: str) -> tuple[list[str], list[str]]:
    from music21 import stream

    from antiphon.models.scoremidi import parse_for_midi, score_to_midi

    files: list[str] = []
    errors: list[str] = []
    with _quiet():
        try:
            parsed = parse_for_midi(source)
        except Exception as error:
            return [], [f"{stem}: {_brief(error)}"]
        # An opus (an ABC collection) holds many tunes: one MIDI file each.
        is_opus = isinstance(parsed, stream.Opus)
        scores = list(parsed.scores) if is_opus else [parsed]
        if not scores:
            return [], [f"{stem}: no scores in this opus"]
        for number, score in enumerate(scores, start=1):
            rel = f"{stem}-{number}.mid" if is_opus else f"{stem}.mid"
            try:
                _write_midi(score_to_midi(score), Path(out_root) / rel)
            except Exception as error:
                errors.append(f"{rel}: {_brief(error)}")
            else:
                files.append(rel)
    return files, errors


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # music21 reports problems in corpus files through warnings and by writing to stderr
    # directly (Environment.warn); thousands of such lines would bury the progress bar.
    sink = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stderr(sink),
        contextlib.redirect_stdout(sink),
    ):
        warnings.simplefilter("ignore")
        yield


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:_MAX_ERROR]


def _write_midi(midi_file: Any, path: Path) -> None:
    # Never a half-written .mid after an interrupt: a cache entry is complete or absent.
    with atomic_path(path, what="corpus MIDI file") as part:
        midi_file.save(str(part))


def _read_journal(path: Path) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return entries
    for line in read_lines(path):
        try:
            entry = json.loads(line)
            entries[entry["stem"]] = entry
        except (ValueError, KeyError, TypeError):
            continue  # the torn last line of an interrupted build: redo that source
    return entries


def _read_manifest(out_root: Path, coll: str, key: str) -> dict[str, Any] | None:
    """A finished collection's manifest, or None if it must be (re)built."""
    try:
        manifest = json.loads((out_root / coll / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # Written by other conversion code, or from sources that have changed since.
    if manifest.get("format") != _CACHE_FORMAT or manifest.get("key") != key:
        return None
    # A cache someone pruned by hand is rebuilt rather than trusted.
    if not all((out_root / f).is_file() for f in manifest["files"]):
        return None
    return manifest


def _manifest_entries(out_root: Path, coll: str) -> dict[str, dict[str, Any]]:
    """The per-source entries of a collection's manifest whose files are all there."""
    try:
        manifest = json.loads((out_root / coll / "manifest.json").read_text(encoding="utf-8"))
        entries = manifest.get("entries", []) if manifest.get("format") == _CACHE_FORMAT else []
        return {e["stem"]: e for e in entries if all((out_root / f).is_file() for f in e["files"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _finish(
    out_root: Path,
    coll: str,
    sources: dict[str, str],
    entries: dict[str, dict[str, Any]],
    key: str,
) -> dict[str, Any]:
    ordered = [entries[stem] for stem in sorted(sources)]
    manifest = {
        "format": _CACHE_FORMAT,
        "key": key,
        "collection": coll,
        "sources": len(ordered),
        "files": [f for e in ordered for f in e["files"]],
        "failures": [err for e in ordered for err in e["errors"]],
        "entries": ordered,
    }
    folder = out_root / coll
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "manifest.json", json.dumps(manifest, indent=1) + "\n", what="manifest")
    (folder / "journal.jsonl").unlink(missing_ok=True)
    return manifest
