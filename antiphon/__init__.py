"""antiphon: a real-time MIDI improvisation daemon.

This package holds the command line (``cli``), ``UserError`` (``errors``) and the ONNX
contract that the writer and the reader of a model share (``contract``). The rest lives in
three subpackages mapped from the repository's top-level folders: ``antiphon.models``
(``models/``), ``antiphon.export`` (``export/``) and ``antiphon.live`` (``live/``).
"""

from __future__ import annotations

__version__ = "0.1.0"
