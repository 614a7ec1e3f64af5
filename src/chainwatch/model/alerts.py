"""The alerting vocabulary as values: :class:`Event` (what a delivery is) and
:class:`StepId` (which escalation step fired). Stored, sent and printed as the strings
they stand for (``page``, ``days:7``); ``parse`` refuses anything else. In ``model``
because storage reads and writes them and the escalation decides with them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class Event(StrEnum):
    """What a delivery is: the webhook payload's ``event`` (DESIGN.md, Alerts), stored
    as its value in the outbox."""

    TICKET = "ticket"
    NOTIFY = "notify"
    PAGE = "page"
    RESOLVE = "resolve"
    WATCHDOG = "watchdog"
    TEST = "test"

    @classmethod
    def of(cls, action: str) -> Event:
        """The event a step's action sends."""
        return cls(str(action))

    @classmethod
    def parse(cls, text: str) -> Event:
        """The event stored as ``text``; ``ValueError`` naming it when it is none."""
        try:
            return cls(text)
        except ValueError:
            known = ", ".join(e.value for e in cls)
            raise ValueError(f"unknown alert event {text!r} (one of: {known})") from None


class StepKind(StrEnum):
    """The kinds of alert step: the rules of :class:`AlertsConfig` (a countdown day,
    a short-lived ``remaining`` share or ``overdue``, ``broken``), and the steps of the
    messages that are no rule's: a resolution, the watchdog, a test."""

    DAYS = "days"
    REMAINING = "remaining"
    OVERDUE = "overdue"
    BROKEN = "broken"
    RESOLVE = "resolve"
    WATCHDOG = "watchdog"
    TEST = "test"


@dataclass(frozen=True)
class StepId:
    """Which step fired or is current. ``str()`` is the stored form, the one the
    database, payloads and output carry: ``days:7``, ``remaining:10%``, ``overdue``,
    ``broken``, ``resolve``, ``watchdog``, ``test``; :meth:`parse` reads it back.

    ``days`` is set for :attr:`StepKind.DAYS` only, ``remaining`` (a fraction, 0.1 for
    ``10%``, kept as its stored form says) for :attr:`StepKind.REMAINING` only.
    """

    kind: StepKind
    days: int | None = None
    remaining: float | None = None

    BROKEN: ClassVar[StepId]
    OVERDUE: ClassVar[StepId]
    RESOLVE: ClassVar[StepId]
    WATCHDOG: ClassVar[StepId]
    TEST: ClassVar[StepId]

    def __post_init__(self) -> None:
        if self.kind is StepKind.DAYS:
            if self.days is None or self.days < 0 or self.remaining is not None:
                raise ValueError(f"a days step needs days >= 0, got {self.days!r}")
        elif self.kind is StepKind.REMAINING:
            if self.remaining is None or not 0 < self.remaining <= 1 or self.days is not None:
                raise ValueError(f"a remaining step needs a share in (0, 1], got "
                                 f"{self.remaining!r}")
            # As the stored form says it: equal ids from the inventory and the database.
            object.__setattr__(self, "remaining", float(_percent(self.remaining)) / 100)
        elif self.days is not None or self.remaining is not None:
            raise ValueError(f"a {self.kind.value} step takes no days or share")

    @classmethod
    def for_days(cls, days: int) -> StepId:
        return cls(StepKind.DAYS, days=days)

    @classmethod
    def for_remaining(cls, share: float) -> StepId:
        return cls(StepKind.REMAINING, remaining=share)

    def __str__(self) -> str:
        if self.kind is StepKind.DAYS:
            return f"days:{self.days}"
        if self.kind is StepKind.REMAINING:
            return f"remaining:{_percent(self.remaining or 0.0)}%"
        return self.kind.value

    @classmethod
    def parse(cls, text: str) -> StepId:
        """The step stored as ``text``; ``ValueError`` naming it when it is none (only
        the stored form itself is accepted: ``days:7``, not ``days:07``)."""
        kind, sep, arg = text.partition(":")
        try:
            if kind == StepKind.DAYS and sep and arg.isdigit():
                found = cls.for_days(int(arg))
            elif kind == StepKind.REMAINING and sep and arg.endswith("%"):
                found = cls.for_remaining(float(arg[:-1]) / 100)
            elif not sep and kind in _PLAIN:
                found = cls(StepKind(kind))
            else:
                raise ValueError
        except ValueError:
            found = None
        if found is None or str(found) != text:
            raise ValueError(f"unknown alert step {text!r} (days:N, remaining:P%, overdue, "
                             "broken, resolve, watchdog or test)")
        return found

    def sort_key(self) -> str:
        return str(self)


StepId.BROKEN = StepId(StepKind.BROKEN)
StepId.OVERDUE = StepId(StepKind.OVERDUE)
StepId.RESOLVE = StepId(StepKind.RESOLVE)
StepId.WATCHDOG = StepId(StepKind.WATCHDOG)
StepId.TEST = StepId(StepKind.TEST)


_PLAIN = frozenset(k.value for k in StepKind if k not in (StepKind.DAYS, StepKind.REMAINING))


def _percent(share: float) -> str:
    return f"{share * 100:g}"
