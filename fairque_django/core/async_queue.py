"""Old home of :class:`AsyncTaskQueue`, now :mod:`.aio`; importable here for the modules that
still use this path."""

from .aio import AsyncTaskQueue, build_async_client

__all__ = ["AsyncTaskQueue", "build_async_client"]
