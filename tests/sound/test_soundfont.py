"""Finding a SoundFont: --soundfont, the system's, pretty_midi's; and the errors when none is
there or FluidSynth itself is missing (run for real in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from antiphon.sound.soundfont import (
    SoundFontError,
    bundled_soundfont,
    default_candidates,
    find_soundfont,
    is_soundfont,
    system_soundfonts,
)

HEADER = b"RIFF\x04\x00\x00\x00sfbk"


def fake_font(path: Path) -> Path:
    path.write_bytes(HEADER)
    return path


def test_an_explicit_soundfont_is_used_as_given(tmp_path: Path) -> None:
    font = fake_font(tmp_path / "mine.sf2")
    assert find_soundfont(font) == font
    assert find_soundfont(str(font)) == font


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: p, "no such SoundFont file"),
        (lambda p: (p.mkdir(), p)[1], "is not a file"),
        (lambda p: (p.write_bytes(b"MThd\x00\x00"), p)[1], "not a SoundFont 2 file"),
    ],
)
def test_an_explicit_soundfont_that_is_not_one_is_a_clear_error(make, why, tmp_path: Path):
    path = make(tmp_path / "x.sf2")
    with pytest.raises(SoundFontError, match=why) as err:
        find_soundfont(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_the_first_usable_candidate_wins(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"not a font")
    first, second = fake_font(tmp_path / "a.sf2"), fake_font(tmp_path / "b.sf2")
    found = find_soundfont(candidates=[tmp_path / "absent.sf2", broken, first, second])
    assert found == first


def test_no_soundfont_anywhere_names_the_package_and_the_option(tmp_path: Path) -> None:
    with pytest.raises(SoundFontError) as err:
        find_soundfont(candidates=[tmp_path / "absent.sf2"])
    message = str(err.value)
    assert "timgm6mb-soundfont" in message and "--soundfont" in message and "\n" not in message


def test_the_system_places_come_first_and_pretty_midis_font_last() -> None:
    places = default_candidates()
    assert places[0] == Path("/usr/share/sounds/sf2/default-GM.sf2")
    bundled = bundled_soundfont()
    if bundled is not None:
        assert places[-1] == bundled
    assert any("Banks" in str(p) for p in system_soundfonts("darwin"))
    assert all(p.suffix == ".sf2" for p in system_soundfonts("win32"))


def test_pretty_midis_timgm6mb_is_found_without_importing_pretty_midi() -> None:
    pytest.importorskip("pretty_midi")
    code = (
        "import sys; from antiphon.sound.soundfont import bundled_soundfont\n"
        "p = bundled_soundfont(); print(p)\n"
        "assert 'pretty_midi' not in sys.modules and 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.name == "TimGM6mb.sf2" and is_soundfont(path)
    assert find_soundfont(candidates=[path]) == path


# -- FluidSynth missing: the real import in a fresh interpreter, one part of it hidden -------
WITHOUT = {
    # pyfluidsynth's own search for the library finds nothing, as on a machine without it.
    "library": "import ctypes.util; ctypes.util.find_library = lambda name: None",
    # the pip package is not installed.
    "binding": textwrap.dedent(
        """
        import importlib.abc, sys
        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "fluidsynth":
                    raise ModuleNotFoundError("No module named 'fluidsynth'", name=name)
        sys.meta_path.insert(0, Hide())
        """
    ),
}


@pytest.mark.parametrize(
    ("part", "hint"),
    [("library", "apt install libfluidsynth3"), ("binding", "pip install 'antiphon[sound]'")],
)
def test_missing_fluidsynth_is_one_line_naming_what_to_install(
    part: str, hint: str, chorale: Path, tmp_path: Path
) -> None:
    code = WITHOUT[part] + textwrap.dedent(
        """
        import sys
        from antiphon.cli import main
        sys.exit(main(["render", sys.argv[1], "-o", sys.argv[2]]))
        """
    )
    out = tmp_path / "out.wav"
    done = subprocess.run(
        [sys.executable, "-c", code, str(chorale), str(out)], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("antiphon: error:"), done.stderr
    assert hint in lines[0]
    assert not out.exists()
