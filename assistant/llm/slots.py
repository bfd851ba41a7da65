"""A process-wide limit on concurrent generations, telling waiters their place in the queue.

An in-process model shares two CPU cores between all answers: two generations at once each run
at about half speed, so both people wait twice as long for a first token. Queuing them instead,
and telling the second person "you are number 1 in the queue", is the better experience.

The limiter works across threads and event loops (tests run one loop per test; a Celery worker
may call the model synchronously), so its state is guarded by a ``threading.Lock`` and waiters
are woken through their own loop (``call_soon_threadsafe``) or a ``threading.Event``. Slots are
handed over in FIFO order. Acquiring is re-entrant within one context (one asyncio task, or a
thread started from it): the chat service takes a slot to report queue positions, and the model
it then calls sees that slot and does not queue a second time.

Positions are 1-based: 1 means "next". ``on_wait(position)`` is called, in the waiter's own
thread or loop, when the waiter has to queue and each time its position changes; it must be a
quick, non-blocking function (e.g. ``asyncio.Queue.put_nowait``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar

logger = logging.getLogger(__name__)

OnWait = Callable[[int], object]

_WAITING, _GRANTED, _RELEASED = "waiting", "granted", "released"

# The tickets this context holds or waits for, innermost last.
_HELD: ContextVar[tuple[_Ticket, ...]] = ContextVar("counsel_llm_slots", default=())


class _Ticket:
    def __init__(self, slots: GenerationSlots, on_wait: OnWait | None) -> None:
        self.slots = slots
        self.on_wait = on_wait
        self.state = _WAITING
        self.position = 0

    def wake(self) -> None:
        """Called under the limiter's lock when state or position changed."""
        raise NotImplementedError


class _AsyncTicket(_Ticket):
    def __init__(self, slots: GenerationSlots, on_wait: OnWait | None) -> None:
        super().__init__(slots, on_wait)
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()
        self._reported = 0

    def wake(self) -> None:
        # A closed loop means the waiter is gone: nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._on_loop)

    def _on_loop(self) -> None:
        if self.state == _GRANTED:
            if not self.future.done():
                self.future.set_result(None)
            return
        if self.state == _WAITING and self.position != self._reported:
            self._reported = self.position
            _report(self.on_wait, self.position)


class _SyncTicket(_Ticket):
    def __init__(self, slots: GenerationSlots, on_wait: OnWait | None) -> None:
        super().__init__(slots, on_wait)
        self.changed = threading.Event()

    def wake(self) -> None:
        self.changed.set()


def _report(on_wait: OnWait | None, position: int) -> None:
    if on_wait is None:
        return
    try:
        on_wait(position)
    except Exception:  # a broken progress callback must not break the queue
        logger.exception("generation slot on_wait callback failed")


class SlotWait:
    """What :meth:`GenerationSlots.reserve` yields: a place in the queue, maybe not yet a slot.

    ``async for position in slot_wait(positions)`` yields the positions that ``on_wait`` put
    into ``positions`` while queued and ends once the slot is granted; ``await
    slot_wait.wait()`` just waits for it.
    """

    def __init__(self, ticket: _Ticket) -> None:
        self._ticket = ticket

    @property
    def granted(self) -> bool:
        return self._ticket.state == _GRANTED

    async def wait(self) -> None:
        await _wait_granted(self._ticket)

    def __call__(self, positions: asyncio.Queue[int]) -> AsyncIterator[int]:
        return self._positions(positions)

    async def _positions(self, positions: asyncio.Queue[int]) -> AsyncIterator[int]:
        ticket = self._ticket
        while ticket.state == _WAITING:
            if not positions.empty():
                yield positions.get_nowait()
                continue
            if not isinstance(ticket, _AsyncTicket):
                await _wait_granted(ticket)
                break
            getter = asyncio.ensure_future(positions.get())
            try:
                # The shared future is only watched, never cancelled, by asyncio.wait.
                await asyncio.wait({getter, ticket.future}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled() and ticket.state == _WAITING:
                yield getter.result()
        # Positions still queued are stale: the slot is ours.


async def _wait_granted(ticket: _Ticket) -> None:
    if isinstance(ticket, _AsyncTicket) and ticket.loop is asyncio.get_running_loop():
        if ticket.state == _WAITING:
            # Shielded: a cancelled waiter gives up its place in the queue through release(),
            # which needs the future intact to tell apart "granted" from "abandoned".
            await asyncio.shield(ticket.future)
        return
    while ticket.state == _WAITING:  # a ticket of another loop or thread: rare, so poll
        await asyncio.sleep(0.01)


class GenerationSlots:
    """At most ``limit`` generations at once; the others wait in FIFO order."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._lock = threading.Lock()
        self._limit = limit
        self._in_use = 0
        self._queue: deque[_Ticket] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        if value < 1:
            raise ValueError("limit must be at least 1")
        with self._lock:
            self._limit = value
            self._dispatch()

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._queue)

    # --- the public ways in ---

    @contextlib.asynccontextmanager
    async def acquire(self, *, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        """Hold a slot for the body; wait for one first if all are taken."""
        held = self._held()
        if held is not None:
            await _wait_granted(held)
            yield
            return
        ticket = _AsyncTicket(self, on_wait)
        token = self._enter(ticket)
        try:
            await _wait_granted(ticket)
            yield
        finally:
            self._leave(ticket, token)

    @contextlib.asynccontextmanager
    async def reserve(self, *, on_wait: OnWait | None = None) -> AsyncIterator[SlotWait]:
        """Take a place in the queue at once and yield a :class:`SlotWait`.

        For async generators that must report queue positions while waiting (a callback cannot
        yield): iterate the ``SlotWait``; the slot is held from its end until the body exits.
        A model called in the body without waiting waits for this same ticket.
        """
        held = self._held()
        if held is not None:
            yield SlotWait(held)
            return
        ticket = _AsyncTicket(self, on_wait)
        token = self._enter(ticket)
        try:
            yield SlotWait(ticket)
        finally:
            self._leave(ticket, token)

    @contextlib.contextmanager
    def acquire_sync(self, *, on_wait: OnWait | None = None) -> Iterator[None]:
        """:meth:`acquire` for synchronous callers (a worker thread, a Celery task)."""
        held = self._held()
        if held is not None:
            while held.state == _WAITING:
                time.sleep(0.01)
            yield
            return
        ticket = _SyncTicket(self, on_wait)
        token = self._enter(ticket)
        try:
            reported = 0
            while ticket.state == _WAITING:
                # Read, then wait: a change in between sets the event, so none is lost.
                if ticket.position != reported:
                    reported = ticket.position
                    _report(on_wait, reported)
                ticket.changed.wait()
                ticket.changed.clear()
            yield
        finally:
            self._leave(ticket, token)

    # --- bookkeeping, all under the lock ---

    def _held(self) -> _Ticket | None:
        for ticket in reversed(_HELD.get()):
            if ticket.slots is self and ticket.state != _RELEASED:
                return ticket
        return None

    def _enter(self, ticket: _Ticket):
        with self._lock:
            if self._in_use < self._limit and not self._queue:
                self._in_use += 1
                ticket.state = _GRANTED
            else:
                self._queue.append(ticket)
                ticket.position = len(self._queue)
            ticket.wake()
        # Drop tickets released elsewhere (see _leave) so the tuple cannot grow.
        live = tuple(t for t in _HELD.get() if t.state != _RELEASED)
        return _HELD.set((*live, ticket))

    def _leave(self, ticket: _Ticket, token) -> None:
        with self._lock:
            if ticket.state == _GRANTED:
                self._in_use -= 1
                self._dispatch()
            elif ticket.state == _WAITING:
                self._queue.remove(ticket)
                self._renumber()
            ticket.state = _RELEASED
        # ValueError: left from another context (an async generator finalised by the loop);
        # the released ticket is ignored by _held() anyway.
        with contextlib.suppress(ValueError):
            _HELD.reset(token)

    def _dispatch(self) -> None:
        while self._queue and self._in_use < self._limit:
            ticket = self._queue.popleft()
            ticket.state = _GRANTED
            self._in_use += 1
            ticket.wake()
        self._renumber()

    def _renumber(self) -> None:
        for position, ticket in enumerate(self._queue, start=1):
            if ticket.position != position:
                ticket.position = position
                ticket.wake()


_slots: GenerationSlots | None = None
_slots_lock = threading.Lock()


def get_generation_slots() -> GenerationSlots:
    """The process-wide limiter, sized by ``LLM_MAX_CONCURRENCY`` (followed when it changes)."""
    from django.conf import settings

    global _slots
    limit = settings.LLM_MAX_CONCURRENCY
    with _slots_lock:
        if _slots is None:
            _slots = GenerationSlots(limit)
    if _slots.limit != limit:
        _slots.limit = limit
    return _slots


def generation_slot(*, on_wait: OnWait | None = None):
    """``get_generation_slots().reserve(on_wait=...)``: the chat service's way in."""
    return get_generation_slots().reserve(on_wait=on_wait)
