"""What is probed: a target's addresses.

An inventory endpoint or a ``check`` argument names a host; the probe connects to
addresses. :func:`resolve` finds every A and AAAA address of one name, :func:`expand` a
whole batch (each distinct name once): one *slot* per address to probe, or the failed
observation of a name that does not resolve.

Public API::

    resolve(target) -> [Target, ...]                  every A and AAAA address, ip set
    expand(targets, ...) -> [Target | Observation]    async: one slot per address, in order
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import Sequence
from dataclasses import replace

from chainwatch.errors import ProbeError
from chainwatch.model import Target
from chainwatch.probe import FailureReason, Observation
from chainwatch.probe.handshake import DEFAULT_TIMEOUT, Limits, failure_message, is_ip_literal

# -- resolution -----------------------------------------------------------------------------


async def resolve(target: Target, *, timeout: float = DEFAULT_TIMEOUT) -> list[Target]:
    """Every address of ``target`` (A and AAAA), each as its own Target with ``ip`` set.

    A target whose ``ip`` is already set, or whose host is an IP literal, is returned as is
    (with ``ip`` filled in). Raises :class:`ProbeError` (reason ``resolve``) when the name
    does not resolve.
    """
    if target.ip is not None:
        return [target]
    if is_ip_literal(target.host):
        return [replace(target, ip=target.host)]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
    except TimeoutError:
        raise ProbeError(
            FailureReason.RESOLVE,
            failure_message(target, FailureReason.RESOLVE, f"no DNS answer within {timeout:g}s"),
        ) from None
    except (OSError, UnicodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ProbeError(
            FailureReason.RESOLVE, failure_message(target, FailureReason.RESOLVE, detail)
        ) from None
    addresses = list(dict.fromkeys(
        str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)
    ))
    if not addresses:
        raise ProbeError(
            FailureReason.RESOLVE,
            failure_message(target, FailureReason.RESOLVE, "the name has no A or AAAA address"),
        )
    return [replace(target, ip=ip) for ip in addresses]


# -- many targets ---------------------------------------------------------------------------

Slot = Target | Observation
"""A resolved address to probe, or the failed observation of a name that did not resolve."""


def _resolve_failure(target: Target, exc: ProbeError) -> Observation:
    return Observation(
        target=target,
        observed_at=dt.datetime.now(dt.UTC),
        failure=FailureReason.RESOLVE,
        message=str(exc),
    )


async def expand(
    targets: Sequence[Target], *, concurrency: int = 256, limits: Limits | None = None
) -> list[Slot]:
    """Resolve every target (each distinct name once): one slot per address, in input
    order, or a failed observation for a name that does not resolve."""
    limits = limits or Limits()
    gate = asyncio.Semaphore(max(1, concurrency))
    lookups: dict[tuple[str, int], asyncio.Task[list[Target]]] = {}

    async def lookup(target: Target) -> list[Target]:
        async with gate:
            return await resolve(target, timeout=limits.resolving)

    for target in targets:
        if target.ip is None and (target.host, target.port) not in lookups:
            lookups[(target.host, target.port)] = asyncio.ensure_future(lookup(target))
    if lookups:
        await asyncio.wait(lookups.values())
    slots: list[Slot] = []
    for target in targets:
        if target.ip is not None:
            slots.append(target)
            continue
        task = lookups[(target.host, target.port)]
        exc = task.exception()
        if isinstance(exc, ProbeError):
            slots.append(_resolve_failure(target, exc))
        elif exc is not None:
            slots.append(_resolve_failure(target, ProbeError(
                FailureReason.RESOLVE,
                failure_message(target, FailureReason.RESOLVE, f"{type(exc).__name__}: {exc}"),
            )))
        else:
            slots.extend(replace(target, ip=r.ip) for r in task.result())
    return slots


__all__ = ["Slot", "expand", "resolve"]
