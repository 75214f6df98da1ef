"""The MIDI representation, torch-free: what the daemon imports from ``antiphon.models``.

Notes and the tick grid read from files and live input (``notes``), the streaming MIDI-like
token codec (``codec``), piano-roll frames (``polyphonic``) and the miditok tokenizer with its
parameters as JSON (``tokenizer``). Nothing here imports torch or the rest of ``models``.
"""
