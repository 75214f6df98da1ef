"""The MIDI representation (``midi``, torch-free), corpora, the model families, training
and metrics.

Importing this package must stay cheap and torch-free: the daemon imports ``midi`` and the
registry's plain data from here. Modules that need torch import it themselves.
"""
