"""Reading model options from a RecBole config: one function per kind of value.

Every option of the plugin's models is read through one of these, so a bad value always
fails the same way: :class:`ConfigValueError` naming the key, the value and what is allowed
(``bits=9 is not valid: an integer in 1..8.``). They need only the config, not the dataset:
a model's ``read_options`` can check every option before any data loads.
"""

import math

from recbole_quant.errors import ConfigValueError
from recbole_quant.packed.limits import MAX_BITS, MIN_BITS

_REQUIRED = object()


def _invalid(key, value, allowed):
    return ConfigValueError(f"{key}={value!r} is not valid: {allowed}.")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def choice(config, key, allowed, none_means=_REQUIRED):
    """``config[key]`` if it is one of ``allowed``; ``~`` (None) gives ``none_means`` if given."""
    value = config[key]
    if value is None and none_means is not _REQUIRED:
        return none_means
    if value not in allowed:
        raise _invalid(key, value, f"choose one of {', '.join(map(str, allowed))}")
    return value


def boolean(config, key):
    """``config[key]`` if it is True or False."""
    value = config[key]
    if not isinstance(value, bool):
        raise _invalid(key, value, "True or False")
    return value


def switch(config, key, off_means):
    """An on/off key that is on unless set to False: True when ``config`` is None, the key is
    missing or ``~``. Any other non-bool value fails naming what ``False`` turns off.

    Args:
        config: a RecBole ``Config`` (missing keys read as None) or a dict, or None.
        off_means (str): what ``False`` does, for the message.
    """
    if config is None:
        return True
    try:
        value = config[key]
    except KeyError:
        value = None
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ConfigValueError(f"{key}={value!r}: must be true or false (false = {off_means}).")
    return value


def integer(config, key, low, high=None, none_allowed=False):
    """``config[key]`` if it is an integer in ``low..high`` (``high`` None: no upper bound).

    ``none_allowed``: ``~`` (None) is returned as None (the meaning is the yaml comment's).
    """
    value = config[key]
    if value is None and none_allowed:
        return None
    if not _is_int(value) or value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise _invalid(key, value, f"an integer in {span}" + (", or ~" if none_allowed else ""))
    return value


def bit_width(config, key="bits"):
    """``config[key]`` as a code width in bits per coordinate (the packed layer's range)."""
    return integer(config, key, MIN_BITS, MAX_BITS)


def number(config, key, low=None, strict=False, none_allowed=False):
    """``config[key]`` as a finite float ``>= low`` (``> low`` if ``strict``).

    ``none_allowed``: ``~`` (None) is returned as None (the option is then "off" or "by
    default", as the yaml comment of the key says).
    """
    value = config[key]
    if value is None and none_allowed:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if not ok:
        bound = "" if low is None else (f" > {low}" if strict else f" >= {low}")
        allowed = f"a finite number{bound}" + (", or ~" if none_allowed else "")
        raise _invalid(key, value, allowed)
    return float(value)


def integer_list(config, key, low=1, example="[10, 5]"):
    """``config[key]`` as a non-empty list of integers ``>= low`` (a lone integer is a list of one)."""
    value = config[key]
    if _is_int(value):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or any(
        not _is_int(v) or v < low for v in value
    ):
        raise _invalid(key, value, f"a non-empty list of integers >= {low}, e.g. {example}")
    return list(value)


def optional_path(config, key):
    """``config[key]`` as a file path, or None for ``~`` (the file itself is read later)."""
    value = config[key]
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(key, value, "a file path, or ~")
    return value
