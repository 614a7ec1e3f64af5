"""A bounded, thread-safe memo table: what an :class:`~chainwatch.analysis.Analyzer` owns.

Every value it holds is a pure function of its key (a parsed certificate of its DER, a
verdict of a chain's fingerprints...), so two threads that miss on the same key at once
both compute it and store equal values: harmless, and cheaper than holding a lock while
a signature is checked. The lock only guards the table's own structure: an
``OrderedDict`` reordered (``move_to_end``) in one thread while another evicts
(``popitem``) can raise ``KeyError`` or lose entries, and on a free-threaded interpreter
there is no global lock to hide that. Each write, and each read that reorders, holds the
lock for one dictionary operation, never for the work; a read that does not reorder
needs no lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """At most ``size`` entries; the least recently used is evicted first (``lru``), or the
    oldest inserted (``lru=False``: cheaper when hits are not worth reordering for).

    ``None`` is not a storable value: :meth:`get` returns it for a miss.
    """

    __slots__ = ("_data", "_lock", "lru", "name", "size")

    def __init__(self, name: str, size: int, *, lru: bool = True) -> None:
        if size < 1:
            raise ValueError(f"memo {name!r}: size must be at least 1")
        self.name = name
        self.size = size
        self.lru = lru
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value remembered for ``key``, or ``None``."""
        if not self.lru:
            # A lookup that does not reorder is one read of the built-in dict underneath
            # (``OrderedDict.get`` is ``dict.get``), atomic with or without a global lock.
            return self._data.get(key)
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        """Remember ``value`` for ``key`` (evicting beyond :attr:`size`); returns it."""
        with self._lock:
            self._data[key] = value
            if self.lru:
                self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Memo({self.name!r}, {len(self)}/{self.size})"
