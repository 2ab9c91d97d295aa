"""Numbers that earn their place in the prose: rounded to what is stable, glued into the text.

A chapter computes a value in a cell tagged ``nbval-check-output`` and calls :func:`bind`; the prose
writes ``{glue:text}`name```. The glued value is a string at a fixed number of significant digits, so
nbval compares exactly what the reader sees, and the text changes when the computation does.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["sig", "bind"]


def sig(value, digits: int = 2) -> str:
    """Format ``value`` with ``digits`` significant digits, in plain notation for ordinary sizes.

    Parameters
    ----------
    value : float or int
        The number; ``nan`` and infinities are written as ``nan``, ``inf``, ``-inf``.
    digits : int
        Significant digits, from 1 to 15.

    Returns
    -------
    str
        For example ``sig(0.012345) == "0.012"``, ``sig(1234.5) == "1200"``, ``sig(-0.25) == "-0.25"``,
        ``sig(2.0) == "2.0"``; scientific notation only below 1e-4 or from 1e15 on.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"value must be a real number, got {value!r}")
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or not 1 <= digits <= 15:
        raise ValueError(f"digits must be an integer in [1, 15], got {digits!r}")
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0" if digits == 1 else "0." + "0" * (digits - 1)
    exponent = math.floor(math.log10(abs(float(f"{value:.{digits - 1}e}"))))
    if exponent < -4 or exponent >= 15:
        return f"{value:.{digits - 1}e}"
    decimals = digits - 1 - exponent
    if decimals > 0:
        return f"{value:.{decimals}f}"
    return f"{round(value, decimals):.0f}"


def bind(name: str, value, digits: int = 2) -> str:
    """Glue ``value`` for the prose as ``{glue:text}`name``` and print ``name = text``.

    Parameters
    ----------
    name : str
        The glue key, unique within the chapter: letters, digits and underscores.
    value : float, int or str
        A float is written with :func:`sig` at ``digits`` significant digits; an int exactly; a string
        as it is (for a verdict or an interval already formatted).
    digits : int
        Significant digits for a float.

    Returns
    -------
    str
        The text the prose will show.
    """
    if not isinstance(name, str) or not name.replace("_", "a").isalnum() or not name.isascii():
        raise ValueError(f"name must be letters, digits and underscores, got {name!r}")
    if isinstance(value, str):
        text = value
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        text = str(int(value))
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        text = sig(value, digits)
    else:
        raise TypeError(f"value must be a real number or a string, got {value!r}")
    from myst_nb import glue  # the book's dependency, imported only where a chapter binds a number

    glue(name, text, display=False)
    print(f"{name} = {text}")
    return text
