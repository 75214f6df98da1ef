"""antiphon: a real-time MIDI improvisation daemon.

The distribution's code lives in three subpackages mapped from the repository's top-level
folders: ``antiphon.models`` (``models/``), ``antiphon.export`` (``export/``) and
``antiphon.live`` (``live/``).
"""

from __future__ import annotations

__version__ = "0.1.0"
