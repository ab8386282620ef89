"""Webhook notifications (``[[notify]]``): chosen rollout events, posted as Slack-compatible text
or as a generic JSON event.

:class:`Notifications` subscribes to the rollout's :class:`~sluice.engine.rollout.events.EventBus` and delivers
from its own tasks, so a slow or dead receiver never blocks or fails the rollout: every attempt
is bounded by the notifier's ``timeout``, failed attempts (connection errors, timeouts, HTTP 5xx,
408, 429) are retried ``retries`` times with exponential backoff, and a delivery that finally
fails is published on the bus as a :class:`~sluice.engine.rollout.events.Notice` (so the console shows it and
history records it). Each notifier delivers in event order.

What each notification says: :mod:`sluice.engine.app.notify_text`.

Wiring (the rollout or CLI)::

    notifications = Notifications(estate.notify)   # its own HTTP session
    notifications.start(bus)            # before the rollout emits its first event
    ...                                 # the rollout runs; bus.close() at its end
    await notifications.aclose()        # delivers what is queued until one deadline (drain_limit,
                                        # at most 30 s) or interrupt() (a signal); before history closes
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.engine.app.notify_text import Story, notification_name, payload
from sluice.engine.model.template import Context, TemplateError, render
from sluice.engine.rollout.events import (
    EventBus,
    Lagged,
    Notice,
    Subscription,
)
from sluice.engine.support.http_client import client_error, header_secrets, one_line
from sluice.engine.support.resources import Resources

if TYPE_CHECKING:
    from sluice.engine.model.estate import Notifier

#: Undelivered notifications a notifier may queue before new ones are dropped (with a Notice).
QUEUE_SIZE = 1000
#: HTTP statuses worth another attempt besides 5xx.
RETRY_STATUSES = frozenset({408, 429})
#: The longest :meth:`Notifications.aclose` delivers for when sluice stops, whatever the bound.
MAX_DRAIN = 30.0
#: How long a stopped worker, the stopped consumer or the closing HTTP session is waited for
#: once delivery time is up (a cancelled task ends at its next step: one turn of the loop).
STOP_WAIT = 0.5


@dataclass
class _Outbox:
    """One notifier's queue and the task delivering from it."""

    notifier: Notifier
    queue: asyncio.Queue[tuple[str, dict[str, Any]]]
    worker: asyncio.Task[None] | None = None
    dropped: int = 0
    busy: bool = False


class Notifications:
    """Delivers a rollout's notifications to its ``[[notify]]`` webhooks.

    Args:
        notifiers: the estate's ``notify`` entries.
        resources: whose HTTP session to use; by default a session of its own, closed by
            :meth:`aclose` — so notifications outlive the rollout's own resources, which the
            rollout closes as it finishes (before ``rollout_finished`` is delivered).
        environ: where ``{env.X}`` comes from (default ``os.environ``).
        backoff: seconds before the first retry; doubled for each further one.
        max_backoff: the longest wait between two attempts.
    """

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        resources: Resources | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ):
        self._own_resources = resources is None
        self.resources = Resources() if resources is None else resources
        self.environ = environ
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._notifiers = tuple(notifiers)
        self._outboxes: list[_Outbox] = []
        self._story = Story()
        self._bus: EventBus | None = None
        self._subscription: Subscription | None = None
        self._consumer: asyncio.Task[None] | None = None
        #: Set by :meth:`aclose` when delivery time is up: workers stop even if a cancellation
        #: was lost (aiohttp turns a cancel that meets its own timeout into a TimeoutError).
        self._stopping = False
        self._interrupt = asyncio.Event()
        self._interrupted = ""

    def start(self, bus: EventBus) -> None:
        """Subscribe to ``bus`` and start delivering (call from the event loop)."""
        if self._bus is not None:
            raise RuntimeError("notifications already started")
        self._bus = bus
        if not self._notifiers:
            return
        # Imported now, before the rollout's first event: a first import of aiohttp takes
        # seconds on a loaded machine and holds the event loop all that time — paid in the
        # drain after ``done`` it made sluice outlive its delivery limit by as much.
        import aiohttp  # noqa: F401

        for notifier in self._notifiers:
            outbox = _Outbox(notifier, asyncio.Queue(QUEUE_SIZE))
            outbox.worker = asyncio.create_task(self._deliver_all(outbox), name="notify")
            self._outboxes.append(outbox)
        self._subscription = bus.subscribe()
        self._consumer = asyncio.create_task(self._consume(self._subscription), name="notify-bus")

    def delivery_bound(self) -> float:
        """Seconds one notification can take at most on the slowest notifier (all attempts)."""
        bound = 0.0
        for notifier in self._notifiers:
            waits = sum(
                min(self.max_backoff, self.backoff * 2**attempt)
                for attempt in range(notifier.retries)
            )
            bound = max(bound, notifier.timeout * (notifier.retries + 1) + waits)
        return bound

    def drain_limit(self) -> float:
        """Seconds :meth:`aclose` may spend delivering: :meth:`delivery_bound`, at most 30 s."""
        return min(self.delivery_bound(), MAX_DRAIN)

    def interrupt(self, reason: str) -> None:
        """Stop delivering now (SIGTERM, Ctrl-C while the queue drains): :meth:`aclose` gives up
        what is still queued at once, and says so with ``reason``."""
        self._interrupted = reason
        self._interrupt.set()

    async def aclose(self, grace: float | None = None) -> None:
        """Deliver what is queued until a deadline ``grace`` seconds away (default
        :meth:`drain_limit`) or until :meth:`interrupt`, then stop: workers cancelled, the HTTP
        session closed, neither waited for more than :data:`STOP_WAIT`.

        Every wait is measured against that one deadline on the loop's monotonic clock, so the
        whole drain takes at most ``max(grace, STOP_WAIT) + 2 * STOP_WAIT`` whatever the receiver
        does (the consumer of the bus is given STOP_WAIT even when ``grace`` is shorter).
        Notifications still undelivered then are dropped and reported as a Notice.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.drain_limit() if grace is None else grace)
        await self._stop_consumer(deadline)
        workers = [o.worker for o in self._outboxes if o.worker is not None]
        if workers:
            drained = asyncio.ensure_future(self._drained())
            interrupted = asyncio.ensure_future(self._interrupt.wait())
            await asyncio.wait(
                (drained, interrupted),
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            finished = drained.done()
            for waiter in (drained, interrupted):
                waiter.cancel()
            left = sum(o.queue.qsize() + int(o.busy) for o in self._outboxes)
            self._stopping = True
            for worker in workers:
                worker.cancel()
            # Each worker ends at its next step once stopping is set, whatever became of the
            # cancellation; it is not waited for beyond STOP_WAIT all the same.
            _, stuck = await asyncio.wait(workers, timeout=STOP_WAIT)
            if stuck:
                self._notice("warning", f"{len(stuck)} notifier(s) did not stop: abandoned")
            if not finished and left:
                why = self._interrupted or "sluice is stopping"
                self._notice("warning", f"{left} notification(s) not delivered: {why}")
            self._outboxes = []
        await self._release()

    async def _stop_consumer(self, deadline: float) -> None:
        """Let the consumer take what the bus has already queued for it, then stop it."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        if self._bus is not None and not self._bus.closed:
            for _ in range(3):
                await asyncio.sleep(0)
            if self._subscription is not None:
                self._subscription.close()
            consumer.cancel()
        remaining = deadline - asyncio.get_running_loop().time()
        await asyncio.wait((consumer,), timeout=max(STOP_WAIT, remaining))
        consumer.cancel()  # a no-op once it has ended

    async def _drained(self) -> None:
        await asyncio.gather(*(o.queue.join() for o in self._outboxes))

    async def _release(self) -> None:
        """Close our own HTTP session; a close that does not end within STOP_WAIT is left."""
        if self._own_resources:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.resources.close(), STOP_WAIT)

    # -- internals -----------------------------------------------------------------------------

    async def _consume(self, subscription: Subscription) -> None:
        async for item in subscription:
            if isinstance(item, Lagged):
                self._notice("warning", f"notifications missed {item.dropped} event(s)")
                continue
            self._story.follow(item)
            name = notification_name(item)
            if name is None:
                continue
            for outbox in self._outboxes:
                if name not in outbox.notifier.events:
                    continue
                try:
                    outbox.queue.put_nowait(
                        (name, payload(outbox.notifier, name, item, self._story))
                    )
                except asyncio.QueueFull:
                    outbox.dropped += 1
                    if outbox.dropped == 1:
                        self._notice("warning", "notifications are backing up: dropping new ones")

    async def _deliver_all(self, outbox: _Outbox) -> None:
        while not self._stopping:
            name, body = await outbox.queue.get()
            outbox.busy = True
            try:
                await self._deliver(outbox.notifier, name, body)
            except Exception as exc:  # a notification must never take the rollout down
                self._cancelled_check()
                self._notice("error", one_line(f"notification {name} failed: {exc!r}"))
            finally:
                outbox.busy = False
                outbox.queue.task_done()

    def _cancelled_check(self) -> None:
        """Raise CancelledError when this task was told to stop, even if the cancellation
        reached us disguised as a timeout (never retry or wait for more work then)."""
        task = asyncio.current_task()
        if self._stopping or (task is not None and task.cancelling()):
            raise asyncio.CancelledError

    async def _deliver(self, notifier: Notifier, name: str, body: dict[str, Any]) -> None:
        import aiohttp

        ctx = Context(target="", channel="", module=self._story.module, version=self._story.version)
        try:
            url = render(notifier.url, ctx, environ=self.environ)
            headers, secrets = {}, dict(url.env)
            for header, template in notifier.headers.items():
                rendered = render(template, ctx, environ=self.environ)
                headers[header] = rendered.text
                secrets.update(rendered.env)
        except TemplateError as exc:
            self._notice("error", f"notification {name} not sent: {exc}")
            return
        hidden = [*secrets.values(), *header_secrets(headers)]
        attempts = notifier.retries + 1
        problem = ""
        for attempt in range(attempts):
            self._cancelled_check()
            if attempt:
                await asyncio.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            try:
                async with self.resources.http().post(
                    url.text,
                    json=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=notifier.timeout),
                ) as response:
                    await response.read()
                    status, reason = response.status, response.reason or ""
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                self._cancelled_check()
                problem = client_error(exc, url.display, notifier.timeout, hidden)
                continue
            if status < 400:
                return
            problem = f"{url.display}: HTTP {status} {reason}".rstrip()
            if status < 500 and status not in RETRY_STATUSES:
                break  # the receiver refuses this payload: retrying will not change its mind
        self._notice(
            "warning",
            f"notification {name} not delivered after {attempt + 1} attempt(s): {problem}",
        )

    def _notice(self, level: str, text: str) -> None:
        if self._bus is not None:
            self._bus.emit(Notice, level=level, message=text)
