"""The escalation policy: a pure state machine (DESIGN.md, Alerts).

``decide(config, situation, state, at)`` says what to send now and returns the
target's next state; nothing here reads a clock, a database or the network, so the
same function drives the monitor, ``scan --at`` rehearsals and ``alerts plan``.

Rules, in DESIGN.md's words:

- Per target, count down to its ``breaks_at`` (the effective expiry across required
  profiles). The current step is the one with the smallest ``days`` that
  ``breaks_at - at`` falls under; only the current step fires.
- A target *broken now* (untrusted, host mismatch, probe failed, stale deployment,
  CA changed) is handled by the ``broken`` rule instead.
- Certificates whose lifetime is <= ``short_lived.max_lifetime`` use the short-lived
  steps instead of the day steps: ``overdue`` (``RENEWAL_OVERDUE``) and
  ``remaining: P%`` (``breaks_at - at`` under P% of the leaf's lifetime).
- Each (target, step, renewal cycle) fires once; a step with ``repeat`` fires again
  after that interval while it stays current.
- An acknowledgement silences the ackable step it was made under until it expires or
  the step changes (it snoozes until the next step at most); ``ackable: false`` steps
  page regardless.
- When the renewal cycle changes (the renewed certificate is served on every address)
  and anything had fired, one ``resolve`` is sent; a broken episode that clears with no
  step current resolves too.

Steps are named by :class:`StepId` values and deliveries by :class:`Event`; both are
stored, sent and printed as the strings they stand for (``days:7``, ``page``), and
read back with their ``parse``, which refuses anything else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from chainwatch.alerts.config import Action, AlertsConfig, AlertStep, BrokenRule, ShortLivedStep
from chainwatch.model.alerts import Event, StepId, StepKind
from chainwatch.model.names import printable
from chainwatch.model.times import iso

__all__ = ["Event", "StepId", "StepKind"]  # re-exported: the escalation's vocabulary


@dataclass(frozen=True)
class Step:
    """The step a target is on, whatever kind of rule it came from."""

    id: StepId
    action: Action
    repeat: dt.timedelta | None
    ackable: bool
    channels: tuple[str, ...]


@dataclass(frozen=True)
class Situation:
    """What the monitor knows about one target at ``at``.

    Attributes:
        key: stable identity of the target (``host:port`` or ``file:PATH``).
        cycle: the renewal cycle being counted down: the SHA-256 of the served leaf
            when every address serves the same one (the oldest one otherwise).
        breaks_at: the target's ``breaks_at``; ``None`` when it was never observed.
        lifetime: the leaf's lifetime (for short-lived rules).
        broken: broken now (the ``broken`` rule applies).
        overdue: ``RENEWAL_OVERDUE`` now.
        overdue_at: when ``RENEWAL_OVERDUE`` begins for the served leaf if it is not
            renewed (``renew_at`` + grace, DESIGN.md); ``None`` when unknown. Only
            :func:`plan` looks at it, to project the overdue step forward.
        summary: one human line saying what is wrong or coming.
        status / findings: passed through to deliveries (webhook payloads).
        tags / owner: the endpoint's labels, for routing.
    """

    key: str
    cycle: str | None
    breaks_at: dt.datetime | None
    lifetime: dt.timedelta | None = None
    broken: bool = False
    overdue: bool = False
    overdue_at: dt.datetime | None = None
    summary: str = ""
    status: str = "ok"
    findings: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    owner: str | None = None


@dataclass(frozen=True)
class Ack:
    """An acknowledgement: who, why, until when, and under which step."""

    step: StepId
    until: dt.datetime
    by: str
    why: str


@dataclass(frozen=True)
class AlertState:
    """A target's escalation state, persisted between runs.

    ``fired`` maps step id to when it last fired in this cycle; ``open`` says whether
    anything fired that has not been resolved.
    """

    cycle: str | None = None
    fired: tuple[tuple[StepId, dt.datetime], ...] = ()
    open: bool = False
    ack: Ack | None = None
    current: StepId | None = None

    def last_fired(self, step: StepId) -> dt.datetime | None:
        return dict(self.fired).get(step)


@dataclass(frozen=True)
class Delivery:
    """One message to send: the outbox row the policy asks for."""

    event: Event
    step: StepId
    channels: tuple[str, ...]
    dedup_key: str
    message: str
    target: str
    breaks_at: dt.datetime | None
    status: str
    findings: tuple[str, ...] = field(default=())


def dedup_key(key: str, cycle: str | None) -> str:
    """Stable for one target and renewal cycle, so receivers update rather than duplicate."""
    return f"chainwatch:{key}:{(cycle or 'unobserved')[:16]}"


def _day_step(step: AlertStep) -> Step:
    return Step(StepId.for_days(step.days), step.action, step.repeat, step.ackable,
                step.channels)


def _broken_step(rule: BrokenRule) -> Step:
    return Step(StepId.BROKEN, rule.action, rule.repeat, rule.ackable, rule.channels)


def _short_step(step: ShortLivedStep) -> Step:
    return Step(short_step_id(step), step.action, step.repeat, step.ackable, step.channels)


def short_step_id(step: ShortLivedStep) -> StepId:
    """The id of a short-lived step: ``overdue`` or ``remaining:P%``."""
    return StepId.OVERDUE if step.overdue else StepId.for_remaining(step.remaining or 0.0)


def current_step(config: AlertsConfig, sit: Situation, at: dt.datetime) -> Step | None:
    """The one step that may fire for ``sit`` at ``at`` (``None``: nothing is due)."""
    if sit.broken:
        return _broken_step(config.broken)
    if sit.breaks_at is None:
        return None
    left = sit.breaks_at - at
    short = config.short_lived
    if short is not None and sit.lifetime is not None and sit.lifetime <= short.max_lifetime:
        lifetime = sit.lifetime
        due = [
            s for s in short.steps
            if s.remaining is not None and left < _share(lifetime, s.remaining)
        ]
        if due:
            return _short_step(min(due, key=lambda s: s.remaining or 0.0))
        overdue = [s for s in short.steps if s.overdue]
        if sit.overdue and overdue:
            return _short_step(overdue[0])
        return None
    due_days = [s for s in config.steps if left < dt.timedelta(days=s.days)]
    if due_days:
        return _day_step(min(due_days, key=lambda s: s.days))
    return None


def _share(lifetime: dt.timedelta, fraction: float) -> dt.timedelta:
    """``fraction`` of ``lifetime``, to the microsecond: the one computation both
    :func:`current_step` and the plan's step boundaries use, so that they agree."""
    return lifetime * fraction


def route(config: AlertsConfig, sit: Situation, step: Step) -> tuple[str, ...]:
    """The channels a step's message goes to for this target: the first route matching
    its tags or owner (for this action), else the step's own channels."""
    for r in config.routes:
        if r.matches(sit.tags, sit.owner, step.action):
            return r.channels
    return step.channels


def decide(
    config: AlertsConfig, sit: Situation, state: AlertState, at: dt.datetime
) -> tuple[tuple[Delivery, ...], AlertState]:
    """What to send for one target at ``at``, and the state to remember."""
    out: list[Delivery] = []
    # A new renewal cycle: the renewed certificate is served everywhere.
    if state.cycle is not None and sit.cycle is not None and sit.cycle != state.cycle:
        if state.open:
            out.append(_delivery(Event.RESOLVE, StepId.RESOLVE, (), state.cycle, sit,
                                 f"{sit.key}: renewed certificate now served on every address"))
        state = AlertState(cycle=sit.cycle)
    elif state.cycle is None and sit.cycle is not None:
        state = replace(state, cycle=sit.cycle)

    step = current_step(config, sit, at)
    if step is None:
        if state.open and state.current == StepId.BROKEN:
            out.append(_delivery(Event.RESOLVE, StepId.RESOLVE, (), state.cycle, sit,
                                 f"{sit.key}: no longer broken"))
            state = replace(state, open=False)
        return tuple(out), replace(state, current=None)

    ack = state.ack
    if ack is not None and (ack.step != step.id or at >= ack.until):
        ack = None  # acknowledgements end with their step or their expiry
    state = replace(state, ack=ack, current=step.id)
    if ack is not None and step.ackable:
        return tuple(out), state
    last = state.last_fired(step.id)
    due = last is None or (step.repeat is not None and at - last >= step.repeat)
    if not due:
        return tuple(out), state
    out.append(_delivery(Event.of(step.action), step.id, route(config, sit, step), state.cycle,
                         sit,
                         _message(step, sit, at)))
    fired = dict(state.fired)
    fired[step.id] = at
    ordered = tuple(sorted(fired.items(), key=lambda item: item[0].sort_key()))
    return tuple(out), replace(state, fired=ordered, open=True)


def acknowledge(
    state: AlertState, *, step: StepId, until: dt.datetime, by: str, why: str
) -> AlertState:
    """Record an acknowledgement of ``step`` (the target's current step)."""
    return replace(state, ack=Ack(step=step, until=until, by=by, why=why))


def plan(
    config: AlertsConfig,
    sit: Situation,
    state: AlertState,
    start: dt.datetime,
    until: dt.datetime,
    *,
    max_events: int = 1000,
) -> list[tuple[dt.datetime, Delivery]]:
    """The deliveries that would fire between ``start`` and ``until`` if nothing changed
    (no renewal, no new acknowledgement): the rehearsal behind ``alerts plan``. It
    continues from ``state``: an acknowledgement in force silences its step until it
    expires, and the step fires again then if it is still current."""
    events: list[tuple[dt.datetime, Delivery]] = []
    t = start
    for _ in range(max_events * 4):
        if t > until or len(events) >= max_events:
            break
        now = _as_of(sit, t)
        sent, state = decide(config, now, state, t)
        events.extend((t, d) for d in sent)
        nxt = _next_instant(config, now, state, t)
        if nxt is None:
            break
        t = nxt
    return events


def _as_of(sit: Situation, t: dt.datetime) -> Situation:
    """``sit`` as it will be at ``t`` if nothing changes: overdue from its
    ``overdue_at``, broken once trust has broken."""
    if not sit.overdue and sit.overdue_at is not None and t >= sit.overdue_at:
        sit = replace(sit, overdue=True)
    if sit.broken or sit.breaks_at is None or t < sit.breaks_at:
        return sit
    when = iso(sit.breaks_at)
    return replace(sit, broken=True, summary=f"trust broke at {when}", status="critical")


def _next_instant(
    config: AlertsConfig, sit: Situation, state: AlertState, t: dt.datetime
) -> dt.datetime | None:
    """The next instant after ``t`` at which :func:`decide` could do something new: a
    repeat coming due, the acknowledgement silencing the current step expiring, a step
    beginning, trust breaking. Every candidate lies after ``t``: an instant already
    passed (a repeat that came due under an acknowledgement) is no next instant."""
    candidates: list[dt.datetime] = []
    step = current_step(config, sit, t)
    if step is not None:
        ack = state.ack
        if ack is not None and ack.step == step.id and step.ackable:
            candidates.append(ack.until)  # decide() fires again once it has expired
        last = state.last_fired(step.id)
        if step.repeat is not None and last is not None:
            candidates.append(last + step.repeat)
    if sit.breaks_at is not None and not sit.broken:
        candidates.append(sit.breaks_at)  # it becomes broken then
        thresholds: Sequence[dt.timedelta] = [dt.timedelta(days=s.days) for s in config.steps]
        short = config.short_lived
        if short is not None and sit.lifetime is not None and sit.lifetime <= short.max_lifetime:
            thresholds = [_share(sit.lifetime, s.remaining) for s in short.steps
                          if s.remaining]
            if sit.overdue_at is not None and not sit.overdue:
                candidates.append(sit.overdue_at)  # RENEWAL_OVERDUE begins then
        for th in thresholds:
            # current_step uses a strict "<": the step starts one microsecond after.
            when = sit.breaks_at - th + dt.timedelta(microseconds=1)
            candidates.append(when)
    later = [c for c in candidates if c > t]
    return min(later) if later else None


def _delivery(
    event: Event, step: StepId, channels: tuple[str, ...], cycle: str | None, sit: Situation,
    message: str,
) -> Delivery:
    return Delivery(
        event=event,
        step=step,
        channels=channels,
        dedup_key=dedup_key(sit.key, cycle),
        message=message,
        target=sit.key,
        breaks_at=sit.breaks_at,
        status=sit.status,
        findings=sit.findings,
    )


def _message(step: Step, sit: Situation, at: dt.datetime) -> str:
    """The alert's one line of text (non-printable characters of names taken from
    certificates escaped: a line break in a SAN must not forge a line of the alert)."""
    return printable(_text(step, sit, at))


def _text(step: Step, sit: Situation, at: dt.datetime) -> str:
    if sit.broken:
        return f"{sit.key} is broken now: {sit.summary}"
    if sit.breaks_at is None:
        return f"{sit.key}: {sit.summary}"
    left = sit.breaks_at - at
    days = int(left.total_seconds() // 86400)
    when = iso(sit.breaks_at)
    lead = f"{sit.key}: trust breaks in {days} days ({when})"
    if step.id == StepId.OVERDUE:
        lead = f"{sit.key}: renewal overdue, trust breaks in {days} days ({when})"
    return f"{lead}: {sit.summary}" if sit.summary else lead
