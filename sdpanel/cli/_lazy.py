"""Argument choices that load on first use, so building the parser (``sdpanel --help``,
``--version``, or any verb) imports none of the services behind the other verbs."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import overload

__all__ = ["LazyChoices", "LazyHelp", "choices_from"]


class LazyChoices(Sequence[str]):
    """A read-only list of strings computed by ``load()`` the first time argparse checks a
    value or prints a usage line. ``%(choices)s`` in a help string works as with a list."""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self._items: list[str] | None = None

    def _all(self) -> list[str]:
        if self._items is None:
            self._items = [str(x) for x in self._load()]
        return self._items

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        return self._all()[i]


def choices_from(module: str, name: str, *, extra: Sequence[str] = (), sort: bool = False,
                 call: bool = True) -> LazyChoices:
    """Choices from ``module.name`` (called when ``call``; a mapping or sequence gives its
    keys/items), imported only when argparse first needs them."""

    def load() -> list[str]:
        value = getattr(importlib.import_module(module), name)
        items = [str(x) for x in (value() if call else value)]
        return [*(sorted(items) if sort else items), *extra]

    return LazyChoices(load)


class LazyHelp(str):
    """A help string whose ``{}`` is filled with ``", ".join(choices)`` only when argparse
    formats it (argparse expands help with ``help % params``), for options that list
    valid values without making argparse reject the others."""

    choices: LazyChoices

    def __new__(cls, template: str, choices: LazyChoices) -> LazyHelp:
        self = super().__new__(cls, template)
        self.choices = choices
        return self

    def __mod__(self, params: object) -> str:
        return str.format(self, ", ".join(self.choices)) % params
