"""The one retry policy of every Redis call (:class:`RetryPolicy`).

A call that fails with a transient error (``redis.ConnectionError`` / ``redis.TimeoutError``) is
tried again after a pause (0.1 s, 0.2 s, 0.4 s: three retries), as long as the call is younger than
its ``deadline``: no retry starts later than that, so one call takes at most ``deadline`` plus one
attempt (an attempt is bounded by the socket timeouts). A hung server costs one attempt per
timeout, so it is not retried at all once a timeout has used up the deadline.

Retries never nest: the outermost retrying layer retries and every layer inside it tries once.
The queue operations (:func:`~.ops.drive` / :func:`~.ops.adrive`) retry each round trip; redis-py,
given :meth:`RetryPolicy.redis_retry` / :meth:`RetryPolicy.async_redis_retry` as its ``retry``,
retries the commands made directly on a client (and, inside a queue operation, tries once), and
its connect retry, nested in a command's, tries once too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from .config import RedisConfig

__all__ = ["RETRYABLE", "Attempts", "Replayable", "RetryPolicy"]

T = TypeVar("T")
RETRYABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
_retrying: ContextVar[bool] = ContextVar("fairque_retrying", default=False)  # inside a retrying call
MIN_DEADLINE = 1.0  # seconds: a short socket_connect_timeout still rides a blip of a few 100 ms


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` after the first attempt, pausing ``base`` seconds doubling up to ``cap``; no
    retry starts ``deadline`` seconds or more after the call started."""

    retries: int = 3
    base: float = 0.1
    cap: float = 1.0
    deadline: float = 5.0

    @classmethod
    def for_redis(cls, config: RedisConfig) -> RetryPolicy:
        """The policy of ``config``: its deadline is ``socket_connect_timeout`` (at least 1 s)."""
        return cls(deadline=max(config.socket_connect_timeout, MIN_DEADLINE))

    def pause(self, failures: int, elapsed: float) -> float | None:
        """The pause before the next attempt after ``failures`` failed ones, ``elapsed`` seconds
        into the call; None: give up."""
        if failures > self.retries:
            return None
        pause = min(self.cap, self.base * 2 ** (failures - 1))
        return pause if elapsed + pause < self.deadline else None

    def call(self, fn: Callable[..., T], args: Iterable[Any]) -> T:
        """``fn(*args)``, retried by this policy (tried once inside another retrying call)."""
        if _retrying.get():
            return fn(*args)
        scope = _retrying.set(True)
        try:
            start, failures = time.monotonic(), 0
            while True:
                try:
                    return fn(*args)
                except RETRYABLE:
                    failures += 1
                    pause = self.pause(failures, time.monotonic() - start)
                    if pause is None:
                        raise
                    time.sleep(pause)
        finally:
            _retrying.reset(scope)

    async def acall(self, fn: Callable[..., Awaitable[T]], args: Iterable[Any]) -> T:
        """As :meth:`call`, for a coroutine function (the scope is the asyncio task's)."""
        if _retrying.get():
            return await fn(*args)
        scope = _retrying.set(True)
        try:
            start, failures = time.monotonic(), 0
            while True:
                try:
                    return await fn(*args)
                except RETRYABLE:
                    failures += 1
                    pause = self.pause(failures, time.monotonic() - start)
                    if pause is None:
                        raise
                    await asyncio.sleep(pause)
        finally:
            _retrying.reset(scope)

    def redis_retry(self) -> redis.retry.Retry:
        """This policy as redis-py's ``retry`` option of a synchronous client."""
        return _RedisRetry(self)

    def async_redis_retry(self) -> redis.asyncio.retry.Retry:
        """This policy as redis-py's ``retry`` option of a ``redis.asyncio`` client."""
        return _AsyncRedisRetry(self)


def _failed(fail: Callable[..., Any], error: Exception, failures: int, with_count: bool) -> Any:
    return fail(error, failures) if with_count else fail(error)


class _RedisRetry(redis.retry.Retry):
    """redis-py's retry hook running :class:`RetryPolicy` (its failure callback after each failure,
    as redis-py expects: it disconnects)."""

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(NoBackoff(), policy.retries, RETRYABLE)
        self.policy = policy

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> T:
        failures = 0

        def attempt() -> T:
            nonlocal failures
            try:
                return do()
            except RETRYABLE as error:
                failures += 1
                _failed(fail, error, failures, with_failure_count)
                if is_retryable is not None and not is_retryable(error):
                    raise _Final(error) from error
                raise

        try:
            return self.policy.call(attempt, ())
        except _Final as final:
            raise final.error from None


class _AsyncRedisRetry(redis.asyncio.retry.Retry):
    """As :class:`_RedisRetry`, for ``redis.asyncio``."""

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(NoBackoff(), policy.retries, RETRYABLE)
        self.policy = policy

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Callable[..., Any],
                              is_retryable: Callable[[Exception], bool] | None = None,
                              with_failure_count: bool = False) -> T:
        failures = 0

        async def attempt() -> T:
            nonlocal failures
            try:
                return await do()
            except RETRYABLE as error:
                failures += 1
                await _failed(fail, error, failures, with_failure_count)
                if is_retryable is not None and not is_retryable(error):
                    raise _Final(error) from error
                raise

        try:
            return await self.policy.acall(attempt, ())
        except _Final as final:
            raise final.error from None


class _Final(Exception):
    """A retryable error that redis-py's own check says not to retry (carried past the policy)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Attempts:
    """Counts the attempts of one request (see :meth:`~.transport.Transport.attempt`): more than
    one means an earlier attempt may have run in Redis and only its reply was lost."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Replayable(Generic[T]):
    """An iterator that can be iterated again from its start (a retried streaming request): what
    it already gave is kept, and an error it raised is raised again at the same place."""

    def __init__(self, source: Iterator[T]) -> None:
        self._source = source
        self._seen: list[T] = []
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[T]:
        yield from self._seen
        if self._error is not None:
            raise self._error
        try:
            for item in self._source:
                self._seen.append(item)
                yield item
        except Exception as exc:
            self._error = exc
            raise
