"""fairque_django tasks of the benchmarks (registered with ``@task``)."""

from __future__ import annotations

from fairque_django.core.registry import task

from . import common


@task(name="bench.noop")
def noop(i: int = 0) -> None:
    common.noop_body(i)


@task(name="bench.record")
def record(i: int) -> None:
    common.record_body(i)


@task(name="bench.sleep")
def sleep_ms(ms: float = 10.0) -> None:
    common.sleep_body(ms)
