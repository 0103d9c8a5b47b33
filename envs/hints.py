"""The "did you mean" hint that error messages add after a word that is not one of the choices.

One function so that every message (scenario keys and node ids, PPO config keys, baseline names,
sweep parameter paths, GSM node ids) suggests a correction by the same rule.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["did_you_mean"]


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the choice ``x`` closest to ``word``, or ``""`` if none is close.

    Close means a similarity ratio ``2 M / T >= 0.6`` (``M`` matching characters, ``T`` the two
    lengths together), the rule and default cutoff of :func:`difflib.get_close_matches`. A ``word``
    that is not a string (a number where a node id belongs, say) gets no hint.

    >>> did_you_mean("retailr", ["plant", "dc", "retailer"])
    " (did you mean 'retailer'?)"
    >>> did_you_mean("warehouse", ["plant", "dc", "retailer"])
    ''
    >>> did_you_mean(44, ["4"])
    ''
    """
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
