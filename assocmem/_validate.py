"""Input checks shared by every public function.

Each check raises ``ValueError`` (or ``TypeError``) whose message names the parameter and the
allowed range, so bad input never surfaces as a traceback from deep inside numpy or torch.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np


def positive_int(name: str, value, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int, requiring an integer ``>= minimum`` (and ``<= maximum`` if given)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {_short(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value}")
    return int(value)


def real(name: str, value, *, low: float = -math.inf, high: float = math.inf,
         low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a finite float in the interval given by ``low``/``high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)}")
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
    """Require ``value`` to be one of ``allowed`` (compared by type and value, so an array, a tensor or
    ``True`` for ``1`` is refused with the same message instead of an ambiguous-truth error)."""
    def same(a) -> bool:
        try:
            return type(value) is type(a) and bool(value == a)
        except Exception:  # an array compared elementwise, or a type whose == raises
            return False

    if not any(same(a) for a in allowed):
        shown = sorted(allowed, key=repr)
        raise ValueError(f"{name} must be one of {shown}, got {_short(value)}")
    return value


def device(name: str, value):
    """A torch device that exists here: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a
    ``torch.device``; returned unchanged. Refused by name when unparseable or not available."""
    import torch

    if not isinstance(value, (str, torch.device)):
        raise TypeError(f"{name} must be a device such as 'cpu' or 'cuda:0', got {_short(value)}")
    try:
        parsed = torch.device(value)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{name} must be a device such as 'cpu' or 'cuda:0', got {value!r} "
                         f"({str(error).splitlines()[0]})") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (parsed.index or 0) >= count:
            raise ValueError(f"{name}={value!r} is not available here ({count} CUDA device(s))")
    elif parsed.type != "cpu":
        try:
            torch.empty(0, device=parsed)
        except (RuntimeError, AssertionError) as error:
            raise ValueError(f"{name}={value!r} is not available here ({str(error).splitlines()[0]})") from None
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


# Up-front cost bounds. A call whose estimated memory or work exceeds these fails before allocating,
# with the estimate and the way to raise the bound (the environment variables below).
MAX_BYTES_ENV, MAX_WORK_ENV = "ASSOCMEM_MAX_BYTES", "ASSOCMEM_MAX_WORK"
DEFAULT_MAX_WORK = 1e14  # elementary operations: hours of CPU time


def max_bytes() -> float:
    """The memory bound: ``$ASSOCMEM_MAX_BYTES``, else this machine's physical memory."""
    if os.environ.get(MAX_BYTES_ENV):
        return float(os.environ[MAX_BYTES_ENV])
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 64e9


def max_work() -> float:
    """The work bound (elementary operations): ``$ASSOCMEM_MAX_WORK``, else ``1e14``."""
    return float(os.environ.get(MAX_WORK_ENV) or DEFAULT_MAX_WORK)


def budget(names: str, *, nbytes: float = 0.0, work: float = 0.0, formula: str = "") -> None:
    """Raise ``ValueError`` naming ``names`` (the parameters that set the size, e.g. ``"N, d, trials"``)
    when the estimated memory ``nbytes`` or work ``work`` (elementary operations) is beyond
    :func:`max_bytes` / :func:`max_work`. ``formula`` says how the estimate was made."""
    how = f" (estimate {formula})" if formula else ""
    if nbytes > max_bytes():
        raise ValueError(f"{names}: this call needs about {nbytes:.3g} bytes of memory{how}, more than the "
                         f"{max_bytes():.3g} available; reduce {names} or set {MAX_BYTES_ENV} to raise the bound")
    if work > max_work():
        raise ValueError(f"{names}: this call needs about {work:.3g} operations{how}, more than the bound "
                         f"{max_work():.3g} (hours of CPU); reduce {names} or set {MAX_WORK_ENV} to raise it")


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def real_array(name: str, values) -> np.ndarray:
    """A non-empty real scalar or array with every entry finite, as float64 (NaN and inf refused by name)."""
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"{name} must be a real number or array, got {_short(values)}")
    try:
        arr = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a real number or array, got {_short(values)} ({error})") from None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a real number or array, got {_short(values)}")
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} must be a non-empty real array, got an empty one")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {_short(values)}")
    return arr


def tensor(name: str, value, *, ndim: int | None = None, min_ndim: int = 0):
    """A non-empty floating torch tensor with every entry finite (an array or nested list is converted),
    with ``ndim`` dimensions if given (else at least ``min_ndim``); refused by name otherwise."""
    import torch

    if not isinstance(value, torch.Tensor):
        arr = real_array(name, value)  # TypeError/ValueError naming the parameter for strings, None, NaN
        value = torch.as_tensor(arr)
    if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
    value = value if value.is_floating_point() else value.double()
    if (ndim is not None and value.dim() != ndim) or value.dim() < min_ndim:
        wanted = f"{ndim}" if ndim is not None else f">= {min_ndim}"
        raise ValueError(f"{name} must have {wanted} dimensions, got shape {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return value


# Work charged for one iteration of a Python-level loop (a training step, an Euler step): about 10 µs of
# interpreter and dispatch overhead, whatever the arithmetic inside it. Add it per step in a ``budget``
# work estimate so that a huge ``steps`` is refused even when each step is tiny.
STEP_WORK = 1e5


def table(name: str, value, columns=()):
    """A pandas ``DataFrame`` holding every one of ``columns``; refused by name otherwise (``None``, a path
    or a string instead of the table, a missing column)."""
    import pandas as pd

    if not isinstance(value, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {_short(value)}")
    missing = [column for column in columns if column not in value.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(value.columns)}")
    return value


def labels(name: str, values, N: int, M: int) -> np.ndarray:
    """Classes of ``N`` tokens: a 1-D integer array of length ``N`` with entries in ``[0, M - 1]``,
    as int64; refused by name otherwise (wrong length, float or NaN entries, strings, None)."""
    arr = int_array(name, values, minimum=0)
    if arr.size != N:
        raise ValueError(f"{name} must hold one class per token (N={N}), got {arr.size}")
    if arr.max() >= M:
        raise ValueError(f"{name} must lie in [0, {M - 1}] (M={M} classes), got max {arr.max()}")
    return arr
