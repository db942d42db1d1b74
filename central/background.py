"""A component that runs one task of its own while an ``async with`` block holds it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

logger = logging.getLogger(__name__)


class Background:
    """``async with`` starts ``_run()`` as a task named ``task_name``; leaving cancels it and
    re-raises what stopped it, if it was not the cancel. A task that dies of a bug on its own is
    logged at once (``what`` names it), not only when central shuts down."""

    task_name = "central-background"
    what = "a background task"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def _run(self) -> Coroutine[Any, Any, None]:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"this {type(self).__name__} is already running")
        self._task = asyncio.create_task(self._run(), name=self.task_name)
        self._task.add_done_callback(self._log_death)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _log_death(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s stopped", self.what, exc_info=task.exception())
