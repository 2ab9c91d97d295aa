"""assocmem: scaling laws of associative memories, the tested core of the book.

Modules (one idea each): ``zipf`` (heavy-tailed data), ``fitting`` (power-law fits),
``sweep`` (grids, cache, executors), ``plotting`` and ``widgets`` (figures and explorers).
"""

__version__ = "0.1.0"
