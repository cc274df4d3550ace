"""One registry type for every named thing: backbones, optimizers, schedulers, metrics, tasks.

A :class:`Registry` maps lower-case names to entries, accepts aliases, and raises one kind of
error for an unknown name: a ``ValueError`` that names the kind, suggests close matches and
says how to list every name. The entries themselves are whatever the caller needs (a class, an
info dataclass...), as in timm's model and optimizer registries.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` names from ``choices`` that look like ``name`` (difflib ratio >= 0.5).

    The comparison ignores case (``"acuracy"`` finds ``"Accuracy"``); the names come back as
    ``choices`` spells them, best match first.
    """
    spelled: dict[str, str] = {}
    for choice in choices:
        spelled.setdefault(choice.lower(), choice)
    near = difflib.get_close_matches(str(name).lower(), list(spelled), n=n, cutoff=0.5)
    return [spelled[m] for m in near]


def unknown_name_error(
    kind: str, name: str, choices: Iterable[str], lister: str | None, hint: str = ""
) -> ValueError:
    """The ValueError for an unknown name: close matches, and the names or how to list them.

    Args:
        kind: what is named, e.g. ``"optimizer"``.
        name: what the user wrote.
        choices: the valid names.
        lister: the public function that lists them, e.g. ``"autotimm.list_optimizers"``; with
            more than 40 names the message points to it instead of listing them. None when there
            is no such function: the message then only counts the names.
        hint: a sentence added at the end (another way to name the thing...). Default ``""``.
    """
    choices = sorted(set(choices))
    near = close_matches(str(name), choices)
    did_you_mean = f" Did you mean: {', '.join(near)}?" if near else ""
    if len(choices) <= 40:
        listing = f" Valid names: {', '.join(choices)}."
    elif lister:
        listing = f" See {lister}() for all {len(choices)} names."
    else:
        listing = f" ({len(choices)} names are known.)"
    extra = f" {hint}" if hint else ""
    return ValueError(f"Unknown {kind} '{name}'.{did_you_mean}{listing}{extra}")


def _key(name: str) -> str:
    return name.strip().lower()


class Registry(Generic[T]):
    """Names (case-insensitive) to entries, with aliases and helpful unknown-name errors.

    Args:
        kind: what the registry holds, used in messages (``"optimizer"``).
        lister: the public function listing its names, used in messages
            (``"autotimm.list_optimizers"``); None when there is none.
        normalize: maps a user's spelling to a key before look-up; default: strip and lower-case
            (the optimizer registry also drops ``_``; ``str.strip`` keeps names case-sensitive).
        loader: fills the registry on first use (e.g. reading ``torch.optim.__all__``), so that
            importing a module that defines a registry stays cheap. Default None.
        hint: a sentence added to the unknown-name error (e.g. how to name something that is
            not registered). Default ``""``.
    """

    def __init__(
        self,
        kind: str,
        lister: str | None,
        normalize: Callable[[str], str] = _key,
        loader: Callable[[Registry[T]], None] | None = None,
        hint: str = "",
    ) -> None:
        self.kind = kind
        self.lister = lister
        self.hint = hint
        self._normalize = normalize
        self._loader = loader
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    # ----------------------------------------------------------------- filling
    def _ensure_loaded(self) -> None:
        if self._loader is not None:
            # Unset first so that the loader may use the registry; restored if it fails, so a
            # later call retries instead of seeing a half-filled registry as complete.
            loader, self._loader = self._loader, None
            try:
                loader(self)
            except BaseException:
                self._loader = loader
                raise

    def register(self, name: str, entry: T, aliases: Iterable[str] = ()) -> T:
        """Add ``entry`` under ``name`` (and ``aliases``); returns the entry."""
        key = self._normalize(name)
        self._entries[key] = entry
        for alias in aliases:
            self._aliases[self._normalize(alias)] = key
        return entry

    def add_alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another spelling of the registered ``name``."""
        self._aliases[self._normalize(alias)] = self._normalize(name)

    # ----------------------------------------------------------------- look-up
    def resolve(self, name: str) -> str:
        """The registered key for ``name`` or an alias of it; ValueError with close matches."""
        self._ensure_loaded()
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{self.kind} must be a non-empty name (a string), got {name!r}")
        key = self._normalize(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise unknown_name_error(
                self.kind, name, self.names(aliases=True), self.lister, self.hint
            )
        return key

    def get(self, name: str) -> T:
        """The entry for ``name`` or an alias of it; ValueError with close matches."""
        return self._entries[self.resolve(name)]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        if not isinstance(name, str):
            return False
        key = self._normalize(name)
        return self._aliases.get(key, key) in self._entries

    def names(self, pattern: str = "*", aliases: bool = False) -> list[str]:
        """Sorted registered names matching the fnmatch ``pattern``; with ``aliases``, theirs too."""
        self._ensure_loaded()
        found = set(self._entries) | (set(self._aliases) if aliases else set())
        pattern = self._normalize(pattern) or "*"
        return sorted(n for n in found if fnmatch.fnmatchcase(n, pattern))

    def aliases(self) -> dict[str, str]:
        """``{alias: registered name}``."""
        self._ensure_loaded()
        return dict(sorted(self._aliases.items()))

    def items(self) -> Iterator[tuple[str, T]]:
        """``(name, entry)`` pairs, sorted by name."""
        self._ensure_loaded()
        return iter(sorted(self._entries.items()))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
