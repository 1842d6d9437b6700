"""The tasks an agent starts on its own (answering, acting on a REFER, stopping media): tracked so
its stop() ends them all, and a failure lands in the agent's errors instead of vanishing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """Tasks named "<owner> <name>"; `cancel()` ends them all, an exception is noted in `errors`."""

    def __init__(self, owner: str, errors: list[str]) -> None:
        self.owner, self.errors = owner, errors
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.errors.append(f"{task.get_name()}: {type(exc).__name__}: {exc}")
            log.warning("%s failed: %s", task.get_name(), exc)

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
