"""Closed forms and predictors, one submodule per chapter's theory.

- ``interference``: exponents of the storage schemes, the threshold rule, the Gaussian predictor (ch. 2)
- ``finite_sample``: the unseen-mass identity and the (d, T) laws (ch. 3)
- ``dynamics``: the decoupled gradient map f(q) and F(n) (ch. 4)
- ``hopfield``: Hopfield capacities and energies in closed form (ch. 5)
- ``volume``: ball volumes, the exact ball integral and the N = O(D^2) argument (ch. 6)
- ``predictor``: the error of a trained memory predicted without training, with its band (ch. 8)
- ``capacity``: the bounds of [CDB24] Theorem 1, a minimax lower bound, the counting capacity (ch. 7)
"""

from . import capacity, dynamics, finite_sample, hopfield, interference, predictor, volume

__all__ = ["capacity", "dynamics", "finite_sample", "hopfield", "interference", "predictor", "volume"]
