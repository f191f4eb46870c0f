"""Dynamic batching: concurrent score requests share one call of the batch scoring code.

Scoring a few accounts costs mostly fixed overhead (one polars query plan, one model call, the
pandas steps around them: ~20 ms for 1 account against ~0.2 ms more per extra account), so a
service that scores each request on its own tops out near 50 requests/s per core. The
:class:`Batcher` lets requests that arrive while a batch is being scored wait in a queue; when
the batch ends, the queued requests that can go together (same as-of and optional tables, no
account in two of them, at most ``max_accounts`` accounts) are scored in one call, on one
scoring thread, and each gets back exactly its own response.

There is no waiting window: a request that finds the scorer idle is scored at once, alone, so
batching adds no latency when the service is quiet and grows the batches only as the load does.
If a batch fails, its requests are retried one by one, so one request that trips a bug fails
alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger("rollrisk.serving")

Request = TypeVar("Request")
Response = TypeVar("Response")


@dataclass
class _Pending(Generic[Request, Response]):
    request: Request
    key: Hashable
    ids: frozenset[str]
    size: int
    future: asyncio.Future[Response] = field(repr=False)


class Batcher(Generic[Request, Response]):
    """Scores requests submitted from one event loop, several at a time, on one thread.

    Args:
        score_batch: scores requests that share a key and no id; returns one response per
            request, in order. Runs on the batcher's own thread.
        key_of: requests with equal keys can share a batch.
        ids_of: the ids (account ids) of a request; requests sharing one never share a batch.
        max_size: a batch holds at most this many ids (a larger request still goes alone).
    """

    def __init__(
        self,
        score_batch: Callable[[Sequence[Request]], Sequence[Response]],
        key_of: Callable[[Request], Hashable],
        ids_of: Callable[[Request], Sequence[str]],
        max_size: int = 1_000,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self._score_batch = score_batch
        self._key_of = key_of
        self._ids_of = ids_of
        self.max_size = max_size
        self._queue: deque[_Pending[Request, Response]] = deque()
        self._busy = False  # a batch is being scored
        self._tasks: set[asyncio.Task[None]] = set()
        self._executor: ThreadPoolExecutor | None = None  # started with the first batch
        self.batches = 0  # batches scored (for logs and tests)
        self.largest_batch = 0

    async def submit(self, request: Request) -> Response:
        """The response to ``request``, scored with whatever is queued alongside it."""
        loop = asyncio.get_running_loop()
        ids = self._ids_of(request)
        pending = _Pending(
            request=request,
            key=self._key_of(request),
            ids=frozenset(ids),
            size=len(ids),
            future=loop.create_future(),
        )
        self._queue.append(pending)
        self._dispatch()
        return await pending.future

    def close(self) -> None:
        """Stop the scoring thread (after the batch it is scoring, if any); a later request
        starts a new one."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _dispatch(self) -> None:
        """Start a batch from the queue unless one is being scored.

        One at a time: scoring is mostly Python holding the GIL, and a second scoring thread
        made batches 40% slower on 2 cores, for no gain in latency.
        """
        if self._busy or not self._queue:
            return
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollrisk-scorer")
        batch = self._take_batch()
        self._busy = True
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        task = loop.create_task(self._score_and_reply(batch))
        self._tasks.add(task)  # a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _score_and_reply(self, batch: list[_Pending[Request, Response]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            assert self._executor is not None
            responses = await loop.run_in_executor(self._executor, self._score, batch)
        except Exception as error:  # noqa: BLE001 - handed to the requests, not swallowed
            responses = [error] * len(batch)
        finally:
            self._busy = False
        for pending, outcome in zip(batch, responses, strict=True):
            if pending.future.done():  # the client went away
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)
        self._dispatch()  # the requests that queued meanwhile

    def _take_batch(self) -> list[_Pending[Request, Response]]:
        """The oldest request, and the queued ones that can join it (in arrival order)."""
        first = self._queue.popleft()
        batch = [first]
        taken = set(first.ids)
        size = first.size
        kept: deque[_Pending[Request, Response]] = deque()
        while self._queue:
            pending = self._queue.popleft()
            if (
                pending.key == first.key
                and size + pending.size <= self.max_size
                and taken.isdisjoint(pending.ids)
            ):
                batch.append(pending)
                taken |= pending.ids
                size += pending.size
            else:
                kept.append(pending)
        self._queue = kept
        return batch

    def _score(self, batch: list[_Pending[Request, Response]]) -> list[Any]:
        """Responses (or the exception each request raised), in batch order."""
        live = [pending for pending in batch if not pending.future.cancelled()]
        if not live:
            return [asyncio.CancelledError() for _ in batch]
        outcomes: dict[int, Any] = {}
        started = time.perf_counter()
        try:
            responses = self._score_batch([pending.request for pending in live])
            outcomes = {id(p): r for p, r in zip(live, responses, strict=True)}
            log.debug(
                "batch of %d request(s), %d id(s), scored in %.1f ms",
                len(live),
                sum(p.size for p in live),
                (time.perf_counter() - started) * 1e3,
            )
        except Exception:  # noqa: BLE001 - retried one by one below
            if len(live) == 1:
                raise
            log.warning("a batch of %d requests failed; scoring them one by one", len(live))
            for pending in live:
                try:
                    outcomes[id(pending)] = self._score_batch([pending.request])[0]
                except Exception as error:  # noqa: BLE001 - goes to this request only
                    outcomes[id(pending)] = error
        return [outcomes.get(id(p), asyncio.CancelledError()) for p in batch]
