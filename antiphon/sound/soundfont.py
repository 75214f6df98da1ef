"""Which General MIDI SoundFont antiphon plays through, found on the machine, never fetched.

``--soundfont`` first; else the system's default GM SoundFont (Debian and Ubuntu:
``/usr/share/sounds/sf2/default-GM.sf2``, an alternative pointing at ``timgm6mb-soundfont``
or ``fluid-soundfont-gm``; the places Fedora, Arch, Homebrew and FluidSynth's own defaults
use); else the small TimGM6mb.sf2 that ships inside the pretty_midi wheel (``antiphon[train]``
installs it). Everything here is the standard library: the studio server and the daemon
import it cheaply, and finding pretty_midi's file does not import pretty_midi.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from antiphon.errors import UserError


class SoundFontError(UserError):
    """No usable SoundFont: the message names the file or the package to install."""


INSTALL_HINT = (
    "install one (Debian/Ubuntu: sudo apt install timgm6mb-soundfont, or fluid-soundfont-gm) "
    "or name a .sf2 file with --soundfont"
)


def system_soundfonts(platform: str | None = None) -> list[Path]:
    """Where the platform's package managers put a GM SoundFont, best guess first."""
    platform = platform or sys.platform
    home = Path.home()
    if platform.startswith("win"):
        roots = [Path(os.environ.get(v, "")) for v in ("PROGRAMDATA", "LOCALAPPDATA") if v]
        places = [Path("C:/soundfonts/default.sf2")]  # FluidSynth's compiled-in default
        places += [r / "soundfonts" / "default.sf2" for r in roots if str(r) not in ("", ".")]
        return places
    places = [
        Path("/usr/share/sounds/sf2/default-GM.sf2"),  # Debian's alternative
        Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
        Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
        Path("/usr/share/soundfonts/default.sf2"),  # Fedora, Arch
        Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
        Path("/usr/local/share/soundfonts/default.sf2"),  # FluidSynth's compiled-in default
    ]
    if platform == "darwin":
        places += [
            Path("/opt/homebrew/share/soundfonts/default.sf2"),
            home / "Library/Audio/Sounds/Banks/default.sf2",
            home / "Library/Audio/Sounds/Banks/FluidR3_GM.sf2",
        ]
    return places


def bundled_soundfont() -> Path | None:
    """pretty_midi's TimGM6mb.sf2, located from the package's spec (not imported)."""
    try:
        spec = importlib.util.find_spec("pretty_midi")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or []:
        path = Path(folder) / "TimGM6mb.sf2"
        if path.is_file():
            return path
    return None


def default_candidates() -> list[Path]:
    """Every place ``find_soundfont`` looks without ``--soundfont``, in order."""
    bundled = bundled_soundfont()
    return [*system_soundfonts(), *([bundled] if bundled else [])]


def is_soundfont(path: Path) -> bool:
    """A RIFF file of form ``sfbk`` (SoundFont 2); what FluidSynth will load."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"sfbk"


def check_soundfont(path: str | os.PathLike[str]) -> Path:
    """``path`` if it is a readable SoundFont 2 file, else a one-line ``SoundFontError``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SoundFontError(f"{path}: no such SoundFont file")
    if not path.is_file():
        raise SoundFontError(f"{path}: is not a file (name a .sf2 SoundFont)")
    if not os.access(path, os.R_OK):
        raise SoundFontError(f"{path}: cannot read the SoundFont (permissions)")
    if not is_soundfont(path):
        raise SoundFontError(f"{path}: not a SoundFont 2 file (no RIFF sfbk header)")
    return path


def find_soundfont(
    explicit: str | os.PathLike[str] | None = None,
    *,
    candidates: Sequence[Path] | Iterable[Path] | None = None,
) -> Path:
    """The SoundFont to use: ``explicit`` (checked), else the first usable file among
    ``candidates`` (default: ``default_candidates()``), else a ``SoundFontError`` that
    says what to install."""
    if explicit is not None and str(explicit) != "":
        return check_soundfont(explicit)
    looked = list(default_candidates() if candidates is None else candidates)
    for path in looked:
        if path.is_file() and is_soundfont(path):
            return path
    raise SoundFontError(f"no General MIDI SoundFont found; {INSTALL_HINT}")
