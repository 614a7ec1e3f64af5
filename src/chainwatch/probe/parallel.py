"""Probing many addresses: bounded concurrency, shards, child processes.

Public API::

    probe_targets(targets, ...) -> [Observation, ...] async: resolve + probe, bounded concurrency
    probe_all(targets, ...) -> [Observation, ...]    sync: the same, keeping every core busy
                                                      (``on_result``: each one as it completes;
                                                      large scans: in child processes)
    HeadStart().begin(targets, ...)                  a large scan's child processes started
                                                      early; probe_all(..., begun=head)
                                                      takes their probes over

Limits: at most ``concurrency`` probes in flight overall and ``per_address`` per IP address.
An address (IP and port) whose connects time out twice in a row without ever succeeding
is written off for the rest of the call (:class:`~chainwatch.probe.handshake.AddressHealth`):
its other probes fail at once (``timeout``, "address ... unresponsive: ...; not tried"),
so one blackholed VIP costs a sweep a few connect timeouts, not one per name behind it.

Concurrency of :func:`probe_all`: OpenSSL releases the GIL during handshake crypto (two
threads doing in-memory handshakes run 1.7x as fast as one), but an event loop runs one
handshake step at a time. ``probe_all`` therefore shards the resolved addresses over
``workers`` threads, each running its own event loop; all probes of an address go to the
same shard, so ``per_address`` stays exact, and addresses are spread so that shards get
about as many probes each. The alternative, one loop handing every
``do_handshake`` to a thread pool, was measured and rejected: 3000 handshakes against
local ``openssl s_server`` processes on a 2-vCPU machine ran at about 1150/s with the
hand-off, 1400/s sharded and 1500/s on a single loop (the servers kept the second core
busy there; sharding still drew 5-15% of it, the hand-off none: a thread switch per
handshake step costs more than the parallel crypto wins). ``workers=1`` is the single loop.

Threads still share one GIL: the Python half of each probe (about 0.15-0.25 ms) runs one at
a time, and so does whatever the caller does with the observations. From
:data:`PROCESS_MIN_ADDRESSES` addresses on (and more than one CPU), ``probe_all`` runs
each shard in a child process instead, which sends its observations back in small
batches while the caller consumes them in ``on_result``. On 1,000 loopback endpoints
(2 vCPUs, nginx on the same machine) probing plus analysis in ``on_result`` ran about 20%
faster than threads then analysis (0.48-0.67x against 0.35-0.65x the rate of a bare
pyOpenSSL thread pool, measured in turns on a noisy machine); analysing in the children
instead was slower (the analysis then blocks the children's event loops), and one child
more than CPUs made no difference. Children come from the ``forkserver`` (this module and
every chainwatch module the program has imported preloaded in it, so a child starts in
milliseconds; the server itself starts once per program, about 0.3 s) or, where there is
none, are fresh interpreters. Either way they import the caller's ``__main__`` module
again, as :mod:`multiprocessing` does: a script that calls ``probe_all`` on a large scan
needs the ``if __name__ == "__main__":`` guard.
Small scans (``chainwatch check``) never start a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from chainwatch.model import ClientHello, Target
from chainwatch.probe import FailureReason, Observation
from chainwatch.probe.handshake import AddressHealth, Limits, failure_message, probe_endpoint
from chainwatch.probe.targets import Slot, expand

if TYPE_CHECKING:
    # Imported where child processes are started or run: a small probe (``chainwatch
    # check``) never starts one, and multiprocessing brings pickle, tempfile, shutil, bz2
    # and lzma with it.
    import multiprocessing.context
    import multiprocessing.process
    from multiprocessing.connection import Connection


async def _probe_slots(
    slots: Sequence[Slot],
    *,
    concurrency: int,
    per_address: int,
    limits: Limits,
    emit: Callable[[int, Observation], None] | None = None,
) -> list[Observation]:
    """Probe every address slot; ``emit(position, observation)`` (if given) as each
    completes, from the loop's thread."""
    gate = asyncio.Semaphore(max(1, concurrency))
    per_ip: dict[str, asyncio.Semaphore] = {}
    health: dict[tuple[str, int], AddressHealth] = {}

    async def one(position: int, target: Target) -> Observation:
        assert target.ip is not None
        # The address first: waiting on a busy address must not hold a global slot.
        address_gate = per_ip.setdefault(target.ip, asyncio.Semaphore(max(1, per_address)))
        record = health.get((target.ip, target.port))
        if record is None:
            record = health[(target.ip, target.port)] = AddressHealth()
        async with address_gate, gate:
            observation = await probe_endpoint(target, limits=limits, health=record)
        if emit is not None:
            emit(position, observation)
        return observation

    async def done(position: int, observation: Observation) -> Observation:
        if emit is not None:
            emit(position, observation)
        return observation

    return list(await asyncio.gather(*(
        one(n, slot) if isinstance(slot, Target) else done(n, slot)
        for n, slot in enumerate(slots)
    )))


async def probe_targets(
    targets: Iterable[Target],
    *,
    concurrency: int = 256,
    per_address: int = 8,
    limits: Limits | None = None,
) -> list[Observation]:
    """Resolve and probe every target: at most ``concurrency`` probes at once overall and
    ``per_address`` per IP address. One observation per address, in input order (a name
    with two addresses yields two consecutive observations; one that does not resolve
    yields one ``resolve`` failure)."""
    limits = limits or Limits()
    slots = await expand(list(targets), concurrency=concurrency, limits=limits)
    return await _probe_slots(
        slots, concurrency=concurrency, per_address=per_address, limits=limits
    )


def probe_hellos(
    requests: Sequence[tuple[Target, ClientHello, Limits]],
    *,
    concurrency: int = 64,
    per_address: int = 4,
) -> list[Observation]:
    """One more handshake per ``(address, ClientHello, limits)`` (``target.ip`` set: an
    address a first probe already found), in input order, synchronously: the handshakes
    of populations whose ClientHello differs from the probe's default. At most
    ``concurrency`` at once overall and ``per_address`` per address; every one has its
    limits' deadlines. Runs its own event loop in a worker thread, so it may be called
    from any thread."""
    if not requests:
        return []

    async def run() -> list[Observation]:
        gate = asyncio.Semaphore(max(1, concurrency))
        per_ip: dict[str, asyncio.Semaphore] = {}

        async def one(target: Target, hello: ClientHello, limits: Limits) -> Observation:
            assert target.ip is not None, "probe_hellos needs addresses (target.ip)"
            address_gate = per_ip.setdefault(target.ip, asyncio.Semaphore(max(1, per_address)))
            async with address_gate, gate:
                return await probe_endpoint(target, limits=limits, hello=hello)

        return list(await asyncio.gather(*(one(t, h, lim) for t, h, lim in requests)))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chainwatch-hellos") as pool:
        return pool.submit(asyncio.run, run()).result()


def _assign_shards(addresses: Sequence[str], shards: int) -> dict[str, int]:
    """A shard for every address, so that each shard gets about as many probes.

    All probes of one address go to one shard (so the per-address limit holds exactly);
    addresses are placed busiest first, each on the least loaded shard. A hash of the
    address would not do: four addresses of 250 endpoints each hashed to shards of 750
    and 250, and the second shard sat idle for two thirds of the scan.
    """
    counts: dict[str, int] = {}
    for ip in addresses:
        counts[ip] = counts.get(ip, 0) + 1
    load = [0] * shards
    placed: dict[str, int] = {}
    for ip in sorted(counts, key=lambda a: (-counts[a], a)):
        shard = min(range(shards), key=load.__getitem__)
        placed[ip] = shard
        load[shard] += counts[ip]
    return placed


PROCESS_MIN_ADDRESSES = 256
"""``probe_all(processes=None)`` runs its shards in child processes from this many address
slots on (and more than one worker); smaller scans stay in threads of the caller."""

_BATCH_SECONDS = 0.01
_BATCH_MAX = 64
_JOIN_SECONDS = 5.0

_Deliver = Callable[[int, Observation], None]
_Message = list[tuple[int, Observation]] | str | None
"""Child to parent: a batch of (position in the bucket, observation), the first one empty
as soon as the child runs; ``None``: the shard is done; a string: the shard failed (its
unfinished slots become failed observations)."""


def probe_all(
    targets: Iterable[Target],
    *,
    concurrency: int = 256,
    per_address: int = 8,
    limits: Limits | None = None,
    workers: int | None = None,
    processes: bool | None = None,
    on_result: Callable[[int, Observation], None] | None = None,
    begun: HeadStart | None = None,
) -> list[Observation]:
    """Synchronous :func:`probe_targets` that keeps every core busy.

    Addresses are sharded over ``workers`` shards (default: the number of CPUs), each
    with its own event loop and ``concurrency / workers`` probes in flight; all probes of
    one address run in the same shard, so ``per_address`` holds exactly. Names are
    resolved first, in a thread of this process, so it may be called from any thread
    (it blocks the caller).

    ``processes`` says where the shards run: ``False``, in threads of this process;
    ``True``, in child processes (each a fresh interpreter, or a fork of the
    ``forkserver``, never of this process); ``None`` (default), in child processes when
    there are at least :data:`PROCESS_MIN_ADDRESSES` addresses and more than one worker.
    Threads share one GIL, so the Python half of every probe (and the caller's own work
    in ``on_result``) runs one at a time; child processes run it in parallel, for a
    start-up cost that only pays off on large scans. Children never outlive the call:
    they are terminated when it ends early (an exception, ``KeyboardInterrupt``), and they
    end their probes if this process dies.

    ``on_result(index, observation)``, when given, is called once per observation as soon
    as it is known (completion order, not input order), in the calling thread, while the
    other probes go on: ``index`` is its position in the returned list. The caller can
    so analyse observations while the network is still busy. An exception it raises stops
    the callbacks and propagates: at once with processes (the children are terminated),
    once the probes in flight have finished with threads.

    ``begun``: a :class:`HeadStart` that may already be probing these targets (begun
    with the same arguments): its children are taken over instead of new ones started.
    """
    limits = limits or Limits()
    targets = list(targets)
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    key = _key(targets, concurrency, per_address, limits, workers, processes)
    plan = begun.take(key) if begun is not None else None
    if plan is None:
        plan = _plan(targets, concurrency=concurrency, per_address=per_address,
                     limits=limits, workers=workers, processes=processes)
    results: list[Observation | None] = [
        s if isinstance(s, Observation) else None for s in plan.slots]

    def deliver(index: int, observation: Observation) -> None:
        results[index] = observation
        if on_result is not None:
            on_result(index, observation)

    if on_result is not None:
        for i, known in enumerate(results):
            if known is not None:
                on_result(i, known)
    if plan.processes and plan.buckets:
        if plan.children is None:
            plan.start()
        _consume(plan, deliver=deliver)
    elif plan.buckets:
        _run_in_threads(
            plan.shard_slots, plan.buckets, concurrency=plan.share,
            per_address=per_address, limits=limits, deliver=deliver,
            stream=on_result is not None,
        )
    out = [r for r in results if r is not None]
    assert len(out) == len(plan.slots)
    return out


def _key(targets: Sequence[Target], concurrency: int, per_address: int, limits: Limits,
         workers: int, processes: bool | None) -> tuple[object, ...]:
    return (tuple(targets), concurrency, per_address, limits, workers, processes)


@dataclass(eq=False)
class _Plan:
    """One :func:`probe_all` call worked out: the resolved slots, sharded; with
    ``processes``, its children once :meth:`start` ran."""

    slots: list[Slot]
    buckets: list[list[int]]
    shard_slots: list[list[Slot]]
    share: int
    per_address: int
    limits: Limits
    processes: bool
    children: list[_Child] | None = None
    unstarted: list[_Child] = field(default_factory=list)

    def start(self) -> None:
        """Start one child per bucket; they probe at once, whether or not anyone reads
        their pipes yet (what they send waits in the pipe and the child's queue)."""
        context = _process_context()
        self.children = []
        for bucket, slots in zip(self.buckets, self.shard_slots, strict=True):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(  # type: ignore[attr-defined]
                target=_shard_process,
                args=(slots, self.share, self.per_address, self.limits, writer),
                name="chainwatch-probe", daemon=True,
            )
            child = _Child(process, reader, bucket, slots, set())
            self.children.append(child)
            try:
                process.start()
            except (OSError, AssertionError):  # out of processes; a daemonic caller
                self.unstarted.append(child)
            finally:
                writer.close()

    def stop(self, finished: bool = False) -> None:
        """End the children (at once unless ``finished``) and close their pipes."""
        children = self.children or []
        started = [child for child in children if child.process.pid is not None]
        for child in started:
            if finished:
                child.process.join(_JOIN_SECONDS)
            if child.process.is_alive():
                child.process.terminate()
        for child in started:
            child.process.join(_JOIN_SECONDS)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
        for child in children:
            child.reader.close()


def _plan(targets: Sequence[Target], *, concurrency: int, per_address: int, limits: Limits,
          workers: int, processes: bool | None) -> _Plan:
    """Resolve every name (in a thread of its own, so any thread may call this) and
    shard the address slots over ``workers``."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chainwatch-resolve") as pool:
        slots = pool.submit(
            asyncio.run, expand(targets, concurrency=concurrency, limits=limits)
        ).result()
    pending = [i for i, s in enumerate(slots) if isinstance(s, Target)]
    addresses = {s.ip for s in slots if isinstance(s, Target)}
    shards = max(1, min(workers, len(addresses)))
    share = max(1, -(-concurrency // shards))
    buckets: list[list[int]] = [[] for _ in range(shards)]
    ips: list[str] = []
    for i in pending:
        slot = slots[i]
        assert isinstance(slot, Target) and slot.ip is not None
        ips.append(slot.ip)
    shard_of = _assign_shards(ips, shards)
    for i, ip in zip(pending, ips, strict=True):
        buckets[shard_of[ip]].append(i)
    buckets = [bucket for bucket in buckets if bucket]
    if processes is None:
        processes = (workers > 1 and len(pending) >= PROCESS_MIN_ADDRESSES
                     and _may_have_children())
    return _Plan(slots=slots, buckets=buckets,
                 shard_slots=[[slots[i] for i in bucket] for bucket in buckets],
                 share=share, per_address=per_address, limits=limits, processes=processes)


class HeadStart:
    """Probes begun before the program is ready to read them: a large scan starts its
    probe processes as soon as it knows its targets, and imports its storage and opens
    its database while they probe. :func:`probe_all` given this object and the same
    arguments as :meth:`begin` had takes over those probes; probes begun for arguments no
    call asks for are ended by :meth:`close` (or when this process exits: children end
    their probes when their parent dies).

    ::

        with HeadStart() as head:
            head.begin(targets, limits=limits)      # children probing now
            ...                                     # imports, database
            probe_all(targets, limits=limits, begun=head, on_result=...)
    """

    def __init__(self) -> None:
        self._plans: dict[tuple[object, ...], _Plan] = {}

    def begin(self, targets: Iterable[Target], *, concurrency: int = 256,
              per_address: int = 8, limits: Limits | None = None,
              workers: int | None = None) -> bool:
        """Start probing ``targets`` in child processes now, if :func:`probe_all` would
        (a scan of at least :data:`PROCESS_MIN_ADDRESSES` addresses, more than one CPU);
        returns whether it did."""
        limits = limits or Limits()
        targets = list(targets)
        workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        plan = _plan(targets, concurrency=concurrency, per_address=per_address,
                     limits=limits, workers=workers, processes=None)
        if not (plan.processes and plan.buckets):
            return False
        plan.start()
        self._plans[_key(targets, concurrency, per_address, limits, workers, None)] = plan
        return True

    def take(self, key: tuple[object, ...]) -> _Plan | None:
        return self._plans.pop(key, None)

    def close(self) -> None:
        """End the probes nobody took over."""
        plans, self._plans = list(self._plans.values()), {}
        for plan in plans:
            plan.stop()

    def __enter__(self) -> HeadStart:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _run_in_threads(
    shard_slots: list[list[Slot]],
    buckets: list[list[int]],
    *,
    concurrency: int,
    per_address: int,
    limits: Limits,
    deliver: _Deliver,
    stream: bool,
) -> None:
    """One event loop per bucket, each in a thread; ``deliver`` from the calling thread
    (as they complete if ``stream``, else at the end)."""
    # Completed observations travel to the calling thread through one queue; each
    # shard ends its stream with None once its loop is done (even if it failed).
    arrivals: queue.SimpleQueue[tuple[int, Observation] | None] = queue.SimpleQueue()

    def emitter(bucket: list[int]) -> _Deliver:
        def emit(position: int, observation: Observation) -> None:
            arrivals.put((bucket[position], observation))
        return emit

    def finished(_: Future[list[Observation]]) -> None:
        arrivals.put(None)

    with ThreadPoolExecutor(
        max_workers=len(buckets), thread_name_prefix="chainwatch-probe"
    ) as pool:
        futures: list[tuple[list[int], Future[list[Observation]]]] = []
        for bucket, slots in zip(buckets, shard_slots, strict=True):
            future = pool.submit(asyncio.run, _probe_slots(
                slots, concurrency=concurrency, per_address=per_address, limits=limits,
                emit=emitter(bucket) if stream else None,
            ))
            if stream:
                future.add_done_callback(finished)
            futures.append((bucket, future))
        if stream:
            running = len(futures)
            while running:
                arrival = arrivals.get()
                if arrival is None:
                    running -= 1
                else:
                    deliver(*arrival)
        else:
            for bucket, future in futures:
                for i, observation in zip(bucket, future.result(), strict=True):
                    deliver(i, observation)
        for _, future in futures:
            future.result()  # a shard that failed raises here


def _may_have_children() -> bool:
    """Daemonic processes (a Celery prefork worker, a multiprocessing pool's worker)
    may not start children: they probe in threads."""
    import multiprocessing

    return not multiprocessing.current_process().daemon


@cache
def _process_context() -> multiprocessing.context.BaseContext:
    """Never ``fork`` (the caller may have threads): the forkserver, with this module
    imported once in it, where there is one; else fresh interpreters."""
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_preload())
        return context
    return multiprocessing.get_context("spawn")


def prestart() -> threading.Thread | None:
    """Start the forkserver now, in the background, where probe processes come from it:
    a caller about to parse a large inventory and open its database lets the server
    import its modules on another core meanwhile, instead of serially before the first
    probe. Harmless when no process is started later (the server just idles). Returns
    the thread starting it (``None`` where there is no forkserver to start)."""
    if not _may_have_children():
        return None
    context = _process_context()
    if context.get_start_method() != "forkserver":
        return None
    from multiprocessing import forkserver

    # ensure_running holds the server's lock: a probe_all meanwhile waits for it.
    thread = threading.Thread(target=forkserver.ensure_running, name="chainwatch-forkserver",
                              daemon=True)
    thread.start()
    return thread


def _preload() -> list[str]:
    """What the forkserver imports once for all children: this module, and every
    chainwatch module the program has imported by now.

    A child imports the program's main module again (as ``__mp_main__``); for the
    ``chainwatch`` command that means ``chainwatch.cli`` and the libraries behind it,
    about 0.1 s of CPU per child unless the forkserver already holds them (measured:
    children ready in 95 ms without, 7 ms with). Preloading ``__main__`` itself would do
    the same, but does not work before Python 3.13.8.
    """
    loaded = [name for name in list(sys.modules) if name.startswith("chainwatch.")]
    return sorted({__name__, *loaded})


@dataclass(eq=False)  # identity: a child is itself, whatever its state
class _Child:
    process: multiprocessing.process.BaseProcess
    reader: Connection
    bucket: list[int]
    slots: list[Slot]
    seen: set[int]
    started: bool = False


def _consume(plan: _Plan, *, deliver: _Deliver) -> None:
    """Read the started children's batches, ``deliver`` in the calling thread as they
    arrive. The children are gone when this returns.

    A child that dies before it starts probing (say, the caller's ``__main__`` could not
    be imported again) leaves its bucket to a thread of this process; one that dies later
    leaves failed observations (probing again here could crash this process too)."""
    from multiprocessing.connection import Connection, wait

    assert plan.children is not None
    unstarted = list(plan.unstarted)
    finished = False
    try:
        live = {child.reader: child for child in plan.children if child not in unstarted}
        while live:
            for ready in wait(list(live)):
                assert isinstance(ready, Connection)
                child = live[ready]
                try:
                    message: _Message = ready.recv()
                except EOFError:
                    child.process.join(_JOIN_SECONDS)
                    message = f"the probe process exited with status {child.process.exitcode}"
                if isinstance(message, list):
                    child.started = True
                    for position, observation in message:
                        child.seen.add(position)
                        deliver(child.bucket[position], observation)
                    continue
                del live[ready]
                if not child.started:
                    unstarted.append(child)
                elif message is not None or len(child.seen) < len(child.bucket):
                    _fail_unseen(child, message or "the probe process ended early", deliver)
        if unstarted:
            _run_in_threads(
                [c.slots for c in unstarted], [c.bucket for c in unstarted],
                concurrency=plan.share, per_address=plan.per_address, limits=plan.limits,
                deliver=deliver, stream=True,
            )
        finished = True
    finally:
        plan.stop(finished)


def _fail_unseen(child: _Child, detail: str, deliver: _Deliver) -> None:
    now = dt.datetime.now(dt.UTC)
    for position, slot in enumerate(child.slots):
        if position not in child.seen and isinstance(slot, Target):
            reason = FailureReason.OTHER
            deliver(child.bucket[position], Observation(
                target=slot, observed_at=now, failure=reason,
                message=failure_message(slot, reason, f"internal error: {detail}"),
            ))


def _shard_process(
    slots: list[Slot], concurrency: int, per_address: int, limits: Limits, conn: Connection
) -> None:
    """A child's life: probe ``slots`` on one event loop and send the observations back
    in small batches. A thread does the sending, so a parent slow to read never stalls
    the loop (and with it the probes' timeouts)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends its children
    outbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()

    def send() -> None:
        with contextlib.suppress(OSError, ValueError):  # the parent is gone
            while True:
                message = outbox.get()
                conn.send(message)
                if not isinstance(message, list):
                    return

    sender = threading.Thread(target=send, name="chainwatch-send", daemon=True)
    sender.start()
    outbox.put([])  # started
    try:
        asyncio.run(_shard(
            slots, concurrency=concurrency, per_address=per_address, limits=limits,
            outbox=outbox,
        ))
    except BaseException as exc:  # reported to the parent, which decides
        outbox.put(f"the probe process failed: {type(exc).__name__}: {exc}")
    else:
        outbox.put(None)
    sender.join()
    conn.close()


async def _shard(
    slots: list[Slot],
    *,
    concurrency: int,
    per_address: int,
    limits: Limits,
    outbox: queue.SimpleQueue[_Message],
) -> None:
    import multiprocessing

    loop = asyncio.get_running_loop()
    parent = multiprocessing.parent_process()
    task = asyncio.current_task()
    if parent is not None and task is not None:
        loop.add_reader(parent.sentinel, task.cancel)  # readable once the parent is dead
    batch: list[tuple[int, Observation]] = []

    def flush() -> None:
        nonlocal batch
        if batch:
            outbox.put(batch)
            batch = []

    def emit(position: int, observation: Observation) -> None:
        if not batch:
            loop.call_later(_BATCH_SECONDS, flush)
        batch.append((position, observation))
        if len(batch) >= _BATCH_MAX:
            flush()

    await _probe_slots(
        slots, concurrency=concurrency, per_address=per_address, limits=limits, emit=emit
    )
    flush()


__all__ = [
    "PROCESS_MIN_ADDRESSES",
    "HeadStart",
    "probe_all",
    "probe_hellos",
    "probe_targets",
]
