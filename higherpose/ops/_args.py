"""Conversion of the ops' Python arguments to the types of their schemas, with errors that name the op
and the argument. A float where an integer is meant (num_heads=1.5, window=(3.9, 3.9)) is refused
rather than truncated; everything about values and shapes is checked once, by the op itself (C++)."""
import numbers
import operator

import numpy as np


def as_int(value, op, name):
    """A Python int from an integer (int, numpy or 0-d integer tensor); bools and floats are refused."""
    if isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an integer, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an integer, got {value!r}") from None


def as_int_list(value, op, name, length=None):
    """A list of ints from an integer sequence (or one integer, repeated `length` times)."""
    if length is not None and not isinstance(value, (list, tuple)) and _is_integer(value):
        return [as_int(value, op, name)] * length
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{op}: {name} must be {'an integer or ' if length else ''}a sequence of integers, got "
                        f"{value!r}")
    items = [as_int(v, op, f"{name}[{i}]") for i, v in enumerate(value)]
    if length is not None and len(items) != length:
        raise ValueError(f"{op}: {name} must have {length} entries, got {len(items)}")
    return items


def as_float(value, op, name):
    """A Python float from a real number; bools, strings and complex numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    return float(value)


def as_bool(value, op, name):
    """A Python bool from a bool (or numpy bool); other values are refused rather than guessed."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{op}: {name} must be True or False, got {value!r}")


def _is_integer(value):
    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, bool)
