"""A name -> builder registry: ``--optimizer`` and ``--pruning-method`` are looked up here."""

from __future__ import annotations

from typing import Generic, TypeVar

from adamwprune.errors import UserError

Builder = TypeVar("Builder")


class Registry(Generic[Builder]):
    def __init__(self, kind: str):
        self.kind = kind          # "optimizer", "pruning method": how messages name an entry
        self._builders: dict[str, Builder] = {}

    def register(self, name: str, builder: Builder) -> None:
        self._builders[name.strip().lower()] = builder

    def names(self) -> tuple[str, ...]:
        return tuple(self._builders)

    def check(self, name: str) -> str:
        """``name`` normalized; a UserError for a name that is not registered."""
        key = (name or "").strip().lower()
        if key in self._builders:
            return key
        raise UserError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")

    def __getitem__(self, name: str) -> Builder:
        return self._builders[self.check(name)]
