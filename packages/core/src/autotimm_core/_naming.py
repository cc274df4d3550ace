"""Name matching shared by the registries: case-insensitive look-up and close-match suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` names from ``choices`` that look like ``name`` (difflib ratio >= 0.5)."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)


def unknown_name_error(kind: str, name: str, choices: Iterable[str], lister: str) -> ValueError:
    """A ValueError for an unknown registry name that lists close matches and how to see all names."""
    choices = sorted(choices)
    near = close_matches(name.lower(), choices)
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    if len(choices) <= 40:
        listing = f" Valid names: {', '.join(choices)}."
    else:
        listing = f" See {lister}() for all {len(choices)} names."
    return ValueError(f"Unknown {kind} '{name}'.{hint}{listing}")
