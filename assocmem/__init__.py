"""assocmem: scaling laws of associative memories, the tested core of the book.

Modules, one idea each (the API appendix has a page per module):

Data and memories
    ``zipf`` (Zipf laws, sampling, counts, seen and unseen mass; chapter 1), ``memory`` (outer-product
    memories, weighting schemes, the exact error; chapter 2), ``finite_sample`` (memories built from
    ``T`` samples; chapter 3), ``training`` (gradient training, many runs batched; chapter 4),
    ``gd_dynamics`` (full-batch gradient descent: sharpness, regimes; chapter 4), ``hopfield``
    (classical, dense and modern Hopfield networks and energies; chapter 5), ``transformer`` (a small
    causal transformer and the N-D experiments; chapter 6), ``corpora`` (offline corpora; chapter 6),
    ``capacity`` (how much a d x d memory holds; chapter 7).
Theory
    ``theory`` (closed forms and predictors, one submodule per chapter: ``interference``,
    ``finite_sample``, ``dynamics``, ``hopfield``, ``volume``, ``capacity``, ``predictor``).
Measurement and presentation
    ``fitting`` (power-law fits with intervals, verdicts against theory), ``report`` (numbers bound
    into the prose), ``plotting`` (the book's figure style and helpers), ``widgets`` (explorers that
    work in Jupyter and in the static HTML).
Running experiments
    ``sweep`` (registry, grids, on-disk cache, the runner), ``executors`` (serial, processes, Dask);
    the command line is ``python -m assocmem``.
"""

__version__ = "0.1.0"
