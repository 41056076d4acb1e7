"""A name -> builder registry, with the names promised for later (refused as "not available yet")."""

from __future__ import annotations

from typing import Generic, TypeVar

from adamwprune.errors import UserError

Builder = TypeVar("Builder")


class Registry(Generic[Builder]):
    def __init__(self, kind: str, planned: tuple[str, ...] = ()):
        self.kind = kind          # "optimizer", "pruning method": how messages name an entry
        self.planned = planned
        self._builders: dict[str, Builder] = {}

    def register(self, name: str, builder: Builder) -> None:
        self._builders[name.strip().lower()] = builder

    def available(self) -> tuple[str, ...]:
        return tuple(self._builders)

    def names(self) -> tuple[str, ...]:
        """Every name known: the available ones, then those still to come."""
        return self.available() + tuple(name for name in self.planned if name not in self._builders)

    def check(self, name: str) -> str:
        """``name`` normalized; a UserError for a name that is unknown or not available yet."""
        key = (name or "").strip().lower()
        if key in self._builders:
            return key
        if key in self.planned:
            raise UserError(f"{self.kind} {key!r} is not available yet; use one of {', '.join(self.available())}")
        raise UserError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")

    def __getitem__(self, name: str) -> Builder:
        return self._builders[self.check(name)]
