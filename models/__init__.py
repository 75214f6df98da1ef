"""Tokenization, corpora, model families, training and metrics.

Importing this package must stay cheap and torch-free: the daemon imports the tokenization
modules (``notes``, ``codec``) from here. Modules that need torch import it themselves.
"""
