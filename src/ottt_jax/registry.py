"""One registry type for every kind of extension: rules, models, datasets, presets, surrogates.

Each extension point of ottt_jax is a :class:`Registry` of named entries with the same API
(``register``, ``get``, ``unregister``, ``names``, ``in``), the same errors (an unknown name lists
the registered ones and suggests the closest), and registration order for listings. The core
never imports anything from this package above it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "close_match"]

T = TypeVar("T")


def close_match(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or an empty string."""
    match = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
      kind: what an entry is, for messages (``"rule"``, ``"model"``, ``"dataset"``, ...).
      check: optional ``check(entry)`` run by :meth:`register`; raises ValueError on a bad entry.
    """

    def __init__(self, kind: str, check: Callable[[T], None] | None = None):
        self.kind = kind
        self._check = check
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, overwrite: bool = False) -> T:
        """Add ``entry`` under ``name`` and return it.

        Raises:
          ValueError: an empty or non-str name, a bad entry, or a taken name without
            ``overwrite=True``.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty str, got {name!r}")
        if self._check is not None:
            self._check(entry)
        if name in self._entries and not overwrite:
            raise ValueError(
                f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it"
            )
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a ValueError lists the registered names when it is unknown)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """Return the entry ``name``; an unknown name is a ValueError listing the names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: {list(self.names())}"
                f"{close_match(name, self._entries)}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Return the registered names in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
