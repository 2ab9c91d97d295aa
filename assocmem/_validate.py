"""Input checks shared by every public function.

Each check raises ``ValueError`` (or ``TypeError``) whose message names the parameter and the
allowed range, so bad input never surfaces as a traceback from deep inside numpy or torch.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, requiring an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def real(name: str, value, *, low: float = -math.inf, high: float = math.inf,
         low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a finite float in the interval given by ``low``/``high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right}, got {value}")
    return value


def seed(name: str, value) -> int:
    """A seed is a non-negative integer (``numpy.random.default_rng`` and torch both accept it)."""
    return positive_int(name, value, minimum=0)


def choice(name: str, value, allowed) -> str:
    """Require ``value`` to be one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def int_array(name: str, values, *, minimum: int = 1) -> np.ndarray:
    """A non-empty 1-D array of integers ``>= minimum``."""
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of integers, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must contain integers, got dtype {arr.dtype}")
    if arr.min() < minimum:
        raise ValueError(f"{name} must contain integers >= {minimum}, got min {arr.min()}")
    return arr.astype(np.int64)


def positive_array(name: str, values) -> np.ndarray:
    """A non-empty real scalar or array with every entry finite and ``> 0``, as float64."""
    arr = np.asarray(values)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a positive real number or array, got {values!r}")
    arr = arr.astype(np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {values!r}")
    return arr
