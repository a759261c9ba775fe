"""Optional OpenTelemetry tracing: a span around each enqueue and each run, one trace per task.

With ``opentelemetry-api`` installed (the ``otel`` extra), a push starts a PRODUCER span
``fairque.enqueue <task name>`` (``fairque.enqueue_batch`` for a batch) and writes its context into
the task's ``trace`` field (W3C ``traceparent``/``tracestate`` through the configured propagator:
text, never pickled objects); the worker continues that trace with a CONSUMER span
``fairque.run <task name>`` around the execution (current while the task runs, so the task's own
spans are its children), with the tenant, task name, id, attempt, outcome and error type as
attributes. Without the package, :data:`ENABLED` is False and callers skip this module entirely;
with the API but no tracer provider set, nothing is done at all (:func:`active`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

try:  # the one guarded import: callers test ENABLED (a module attribute), nothing more
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by the test that hides opentelemetry
    ENABLED = False
else:
    ENABLED = True

if TYPE_CHECKING:
    from .models import Task

__all__ = ["ENABLED", "OUTCOMES", "RunSpan", "active", "trace_push", "trace_push_batch", "use_tracer_provider"]

T = TypeVar("T")

TRACER_NAME = "fairque_django"
MAX_CARRIER_CHARS = 1024  # a trace field larger than this keeps only traceparent and tracestate
OUTCOMES = ("success", "retry", "dead", "failure", "cancelled")
"""``fairque.outcome`` of a run span: returned; failed and retried later; failed for good (dead
letter); failed and could not be recorded (lease lost, Redis unreachable); cancelled."""


_provider: Any = None  # use_tracer_provider(); None: OpenTelemetry's global provider


def use_tracer_provider(provider: Any) -> None:
    """Make fairque's spans with ``provider`` instead of OpenTelemetry's global one (None: the
    global one again); for tests and for applications that keep several providers."""
    global _provider
    _provider = provider


def active() -> bool:
    """Whether spans would record: a provider was given (:func:`use_tracer_provider`) or set
    globally. Without one, OpenTelemetry's spans are no-ops: fairque skips them altogether."""
    return _provider is not None or not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)


def _tracer() -> Any:
    if _provider is not None:
        return _provider.get_tracer(TRACER_NAME)
    return trace.get_tracer(TRACER_NAME)


def _name(task: Task) -> str:
    return task.func_name or "payload task"


def _inject(span: Any, task: Task) -> None:
    """Write ``span``'s context into ``task.trace`` (unless the task carries one already)."""
    if task.trace:
        return
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    if sum(len(k) + len(v) for k, v in carrier.items()) > MAX_CARRIER_CHARS:
        carrier = {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}
    if carrier:  # a no-op tracer (API without SDK) injects nothing: the body stays as it was
        task.trace = carrier


def _end(span: Any, error: BaseException | None = None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.set_attribute("error.type", type(error).__name__)
    span.end()


def trace_push(task: Task, op: Generator[Any, Any, T]) -> Generator[Any, Any, T]:
    """Run the push operation ``op`` of ``task`` inside a PRODUCER span whose context the task
    carries (injected before ``op`` encodes the body)."""
    if not active():
        return (yield from op)
    span = _tracer().start_span(f"fairque.enqueue {_name(task)}", kind=SpanKind.PRODUCER, attributes={
        "messaging.system": "fairque", "messaging.operation.type": "send", "fairque.task.name": _name(task),
        "fairque.task.id": task.task_id, "messaging.message.id": task.task_id})
    _inject(span, task)
    try:
        outcome = yield from op
    except BaseException as exc:
        _end(span, exc)
        raise
    if task.user_id:
        span.set_attribute("fairque.tenant", task.user_id)
    if isinstance(outcome, dict) and outcome.get("duplicate"):
        span.set_attribute("fairque.duplicate", True)
    _end(span)
    return outcome


def trace_push_batch(tasks: Sequence[Task], op: Generator[Any, Any, T]) -> Generator[Any, Any, T]:
    """Run the batch push ``op`` inside one PRODUCER span ``fairque.enqueue_batch``; each task that
    carries no trace yet carries this span's context."""
    if not active():
        return (yield from op)
    span = _tracer().start_span("fairque.enqueue_batch", kind=SpanKind.PRODUCER, attributes={
        "messaging.system": "fairque", "messaging.operation.type": "send",
        "messaging.batch.message_count": len(tasks)})
    for task in tasks:
        _inject(span, task)
    try:
        result = yield from op
    except BaseException as exc:
        _end(span, exc)
        raise
    _end(span)
    return result


class RunSpan:
    """The CONSUMER span of one attempt, child of the enqueue span the task carries (a root span
    when it carries none)."""

    __slots__ = ("span",)

    def __init__(self, task: Task, worker_id: str) -> None:
        parent = propagate.extract(task.trace or {}, context=otel_context.Context())
        self.span = _tracer().start_span(f"fairque.run {_name(task)}", context=parent, kind=SpanKind.CONSUMER,
                                         attributes={
            "messaging.system": "fairque", "messaging.operation.type": "process",
            "messaging.message.id": task.task_id, "fairque.task.id": task.task_id,
            "fairque.task.name": _name(task), "fairque.tenant": task.user_id or "",
            "fairque.attempt": task.attempts, "fairque.worker": worker_id})

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The span is the current one inside the block (in this thread or coroutine)."""
        token = otel_context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """Close the span with its ``fairque.outcome`` (one of :data:`OUTCOMES`) and the error."""
        self.span.set_attribute("fairque.outcome", outcome)
        _end(self.span, error)
