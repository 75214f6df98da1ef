"""The import directions of the layout (README, "Layout"), enforced.

Every module's imports are read from its source, the lazy ones inside functions included,
and checked against ``RULES``; a fresh interpreter in which torch cannot be imported then
runs the daemon's side for real: every ``antiphon.live`` and ``antiphon.sound`` module, and
``antiphon continue`` with the shipped default model.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"antiphon": "antiphon", "live": "antiphon.live", "export": "antiphon.export"}
FOLDERS["models"] = "antiphon.models"

# Layers, from the module names they hold (the first prefix that matches wins).
LAYERS = [
    ("antiphon.cli", "cli"),
    ("antiphon.__main__", "cli"),
    ("antiphon.live", "live"),
    ("antiphon.sound", "sound"),
    ("antiphon.studio", "studio"),
    ("antiphon.export", "export"),
    ("antiphon.models.midi", "midi"),
    ("antiphon.models.registry", "registry"),  # plain data that the daemon reads
    ("antiphon.models", "models"),
    ("antiphon", "core"),  # the package itself, errors, the ONNX contract
]
DAEMON_DEPS = {"numpy", "mido", "rtmidi", "onnxruntime", "miditok", "symusic"}
# layer -> (the layers it may import, the third-party packages it may import; None: any).
# The standard library is always allowed.
RULES: dict[str, tuple[set[str], set[str] | None]] = {
    "core": ({"core"}, {"numpy"}),
    "cli": ({"core", "cli"}, set()),  # at module level; its handlers import the library (LAZY)
    "live": ({"core", "live", "midi", "registry", "sound"}, DAEMON_DEPS),
    # FluidSynth (pyfluidsynth's module is ``fluidsynth``) is imported only where it plays.
    "sound": ({"core", "sound", "midi"}, {"numpy", "mido", "fluidsynth"}),
    # The studio's server runs inside the daemon: what the daemon may import, and websockets.
    "studio": (
        {"core", "live", "midi", "registry", "sound", "studio"},
        DAEMON_DEPS | {"websockets"},
    ),
    "midi": ({"core", "midi"}, {"numpy", "mido", "miditok", "symusic"}),
    "registry": ({"core"}, set()),  # names the torch modules as strings, imports none
    "models": ({"core", "models", "midi", "registry"}, None),
    "export": ({"core", "export", "live", "models", "midi", "registry"}, None),
}
# inside functions only
LAZY = {"cli": {"live", "export", "models", "midi", "registry", "sound", "studio"}}


def layer(module: str) -> str:
    return next(
        name for prefix, name in LAYERS if module == prefix or module.startswith(prefix + ".")
    )


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str, bool]]:
    """``(line, imported module, at module level)`` for every import statement, nested ones
    included; ``from a import b`` names ``a.b`` when ``b`` is a module of ours."""
    known = modules()
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for a in child.names:
                    name = f"{base}.{a.name}"
                    found.append((child.lineno, name if name in known else base, top))
            visit(child, inner)

    visit(ast.parse(source), True)
    return found


def allowed(own: str, name: str, top: bool) -> bool:
    layers, third_party = RULES[own]
    root = name.partition(".")[0]
    if root == "tests":
        return False
    if root == "antiphon":
        return layer(name) in layers or (not top and layer(name) in LAZY.get(own, set()))
    return root in sys.stdlib_module_names or third_party is None or root in third_party


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    own = layer(module)
    return [
        f"{module}:{line} ({own}) imports {name}"
        for line, name, top in imports(source, module, is_package)
        if not allowed(own, name, top)
    ]


def test_every_module_keeps_to_the_import_directions() -> None:
    bad = [
        v
        for module, path in modules().items()
        for v in violations(module, path.read_text(), path.name == "__init__.py")
    ]
    assert not bad, "imports against the layout (README, Layout):\n" + "\n".join(bad)


def test_every_module_has_a_layer_and_every_layer_has_modules() -> None:
    assert {layer(m) for m in modules()} == set(RULES)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("antiphon.live.engine", "import torch"),
        ("antiphon.live.engine", "from antiphon.export import verify"),
        ("antiphon.live.engine", "def f():\n    from antiphon.models.train import train"),
        ("antiphon.live.engine", "import onnx"),
        ("antiphon.models.midi.codec", "from antiphon.models.corpus import resolve_corpus"),
        ("antiphon.models.midi.codec", "from torch import nn"),
        ("antiphon.models.registry", "from antiphon.models.transformer import Transformer"),
        ("antiphon.models.train", "from antiphon.live.session import ModelFile"),
        ("antiphon.contract", "from antiphon.live.session import ModelFile"),
        ("antiphon.cli", "from antiphon.export.bench import bench"),
        ("antiphon.export.verify", "from antiphon.cli import main"),
        ("antiphon.live.stepper", "from .. import cli"),
        ("antiphon.sound.render", "from antiphon.live.daemon import Daemon"),
        ("antiphon.sound.render", "import torch"),
    ],
)
def test_the_checker_flags_a_forbidden_import(module: str, source: str) -> None:
    assert violations(module, source)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("antiphon.live.engine", "from antiphon.contract import Signature\nimport numpy"),
        ("antiphon.live.engine", "def f():\n    from antiphon.models.registry import FAMILIES"),
        ("antiphon.export.verify", "import torch\nfrom antiphon.live.stepper import greedy"),
        ("antiphon.cli", "def f():\n    from antiphon.export.bench import bench"),
        ("antiphon.models.midi.codec", "from .notes import Grid"),
        ("antiphon.live.daemon", "def f():\n    from antiphon.sound.synth import LiveSynth"),
        ("antiphon.sound.render", "import fluidsynth\nfrom antiphon.models.midi import notes"),
    ],
)
def test_the_checker_lets_an_allowed_import_pass(module: str, source: str) -> None:
    assert violations(module, source) == []


def test_every_package_folder_is_installed() -> None:
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {m for m, p in modules().items() if p.name == "__init__.py"}
    assert packages == set(setuptools["packages"])


DAEMON_WITHOUT_TORCH = """
import importlib, importlib.abc, pkgutil, sys
BLOCKED = ("torch", "onnx", "antiphon.export")
KEEP = ("antiphon.models.midi", "antiphon.models.registry")

def blocked(name):
    if any(name == b or name.startswith(b + ".") for b in BLOCKED):
        return True
    return name.startswith("antiphon.models.") and not name.startswith(KEEP)

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ImportError(f"{name} must not be imported by the daemon's side")

sys.meta_path.insert(0, Block())
import antiphon.live, antiphon.models.midi, antiphon.sound
for package in (antiphon.live, antiphon.models.midi, antiphon.sound):
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(m.name)
from antiphon.cli import main
from antiphon.models.midi.tokenizer import import_miditok

import_miditok()
assert main(["continue", sys.argv[1], "-o", sys.argv[2], "--seconds", "4", "--seed", "0"]) == 0
assert sys.modules.get("torch") is None, "torch was imported"
"""


def test_the_daemon_side_runs_with_torch_unimportable(chorale, tmp_path) -> None:
    out = tmp_path / "out.mid"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DAEMON_WITHOUT_TORCH), str(chorale), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{out}: +" in proc.stdout and "s of music" in proc.stdout
    import mido

    assert any(msg.type == "note_on" for msg in mido.MidiFile(out))
