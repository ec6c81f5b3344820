"""Checks of integer arguments, shared by the builders, layers, transforms and bijectors.

Counts are never coerced: bools, floats and strings are refused (``2.5``, ``True`` and
``"3"`` are errors, never rounded), numpy integers are accepted. The errors name what was
expected and what came. Imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import numbers


def is_integer(value) -> bool:
    """True for Python and numpy integers; False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def count(value, name: str, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (or None when allowed).

    Raises:
        TypeError: ``value`` is not an integer (a bool, a float, a string...).
        ValueError: ``value`` is an integer below ``minimum``.

    Example:
        >>> count(3, "num_layers")
        3
        >>> count(2.5, "num_layers")
        Traceback (most recent call last):
        TypeError: Expected num_layers to be an integer >= 1; got 2.5 (float).
    """
    if value is None and allow_none:
        return None
    if not is_integer(value):
        expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise TypeError(
            f"Expected {name} to be {expected}; got {value!r} ({type(value).__name__})."
        )
    if value < minimum:
        raise ValueError(f"Expected {name} >= {minimum}; got {value}.")
    return int(value)


def integer(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; a ValueError for a non-integer or a smaller one.

    Example:
        >>> integer(0, "event_size")
        Traceback (most recent call last):
        ValueError: Expected an integer event_size >= 1; got 0.
    """
    if not is_integer(value) or value < minimum:
        raise ValueError(f"Expected an integer {name} >= {minimum}; got {value!r}.")
    return int(value)
