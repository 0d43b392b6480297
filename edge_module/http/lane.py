"""A lane: `size` threads running blocking calls for an asyncio loop (the granian server's
decision and side threads)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any


class Lane:
    """`size` threads running blocking calls for the loop: lighter than an executor (no
    concurrent.futures.Future, no lock per call), the answer handed back through the loop."""

    def __init__(self, size: int, name: str) -> None:
        self.size, self.name = size, name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for k in range(self.size):
            thread = threading.Thread(target=self._work, name=f"{self.name}_{k}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        self._queue.put((future, fn, args))
        return future

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on a thread; nobody is told when it is done (`fn` handles its
        own errors and completion)."""
        self._queue.put((None, fn, args))

    def stop(self) -> None:
        """Finish what is queued, then end the threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        call_soon = self._loop.call_soon_threadsafe
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if future is None:  # submitted: it reports its own end
                fn(*args)
                continue
            result, error = None, None
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
                error = exc
            try:
                call_soon(_resolve, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits for it any more
                pass


def _resolve(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
