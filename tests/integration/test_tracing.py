"""OpenTelemetry: the enqueue span's context travels in the task; the worker's run span is its child."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from fairque_django import Task, TaskQueue
from fairque_django.core import tracing
from fairque_django.core.config import FairQueueConfig
from tests.support import eventually, running_worker
from tests.support.processes import ROOT, command_env
from tests.support.redis_url import REDIS_URL
from tests.testapp import tasks as t

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the test extras install opentelemetry-sdk")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

pytestmark = pytest.mark.usefixtures("redis_client")

FAST = {"poll_interval_seconds": 0.1, "heartbeat_interval_seconds": 0.2}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


def config(make_config: Any, **queue: Any) -> FairQueueConfig:
    cfg: FairQueueConfig = make_config(workers=[{"id": "w1", "assigned_users": ["*"], **FAST}], **queue)
    return cfg


def named(exporter: InMemorySpanExporter, name: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_the_run_span_is_a_child_of_the_enqueue_span(make_config: Any, spans: InMemorySpanExporter) -> None:
    cfg = config(make_config)
    queue = TaskQueue(cfg)
    task = t.add(2, 3)
    queue.push(task, "org:7")
    [enqueue] = named(spans, "fairque.enqueue tests.testapp.tasks.add")
    assert enqueue.kind is SpanKind.PRODUCER
    assert enqueue.attributes["fairque.tenant"] == "org:7" and enqueue.attributes["fairque.task.id"] == task.task_id
    # the body carries the W3C context as text
    body = json.loads(queue.client.hget(queue.keys.task(task.task_id), "b"))
    assert body["trace"]["traceparent"].startswith(f"00-{enqueue.context.trace_id:032x}-"
                                                   f"{enqueue.context.span_id:016x}-")
    with running_worker(cfg, "w1"):
        assert queue.result(task.task_id, user_id="org:7").wait(timeout=30) == 5
        [run] = eventually(lambda: named(spans, "fairque.run tests.testapp.tasks.add"), timeout=10)
    assert run.kind is SpanKind.CONSUMER
    assert run.context.trace_id == enqueue.context.trace_id
    assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
    attrs = dict(run.attributes)
    assert attrs["fairque.tenant"] == "org:7" and attrs["fairque.task.name"] == "tests.testapp.tasks.add"
    assert attrs["fairque.task.id"] == task.task_id and attrs["fairque.attempt"] == 1
    assert attrs["fairque.outcome"] == "success" and "error.type" not in attrs


def test_failed_runs_say_retry_then_dead_with_the_error_type(make_config: Any, spans: InMemorySpanExporter) -> None:
    cfg = config(make_config, retry_backoff_base_seconds=0.01, retry_backoff_max_seconds=0.02)
    queue = TaskQueue(cfg)
    task = t.fails_once_for_good("boom")
    task.max_retries = 1
    queue.push(task, "org:8")
    with running_worker(cfg, "w1"):
        runs = eventually(lambda: len(r := named(spans, "fairque.run tests.testapp.tasks.fails_once_for_good")) == 2
                          and r, timeout=30)
    [enqueue] = named(spans, "fairque.enqueue tests.testapp.tasks.fails_once_for_good")
    runs.sort(key=lambda s: s.attributes["fairque.attempt"])
    assert [(s.attributes["fairque.attempt"], s.attributes["fairque.outcome"]) for s in runs] == [(1, "retry"),
                                                                                                   (2, "dead")]
    for run in runs:
        assert run.attributes["error.type"] == "KeyError" and not run.status.is_ok
        assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
        assert run.context.trace_id == enqueue.context.trace_id


def test_a_task_s_own_spans_are_children_of_the_run_span(make_config: Any, spans: InMemorySpanExporter) -> None:
    cfg = config(make_config)
    queue = TaskQueue(cfg)
    task = Task.create("org:9", func_name="tests.testapp.tasks.traced_inside")
    queue.push(task)
    with running_worker(cfg, "w1"):
        queue.result(task.task_id, user_id="org:9").wait(timeout=30)
        [inner] = eventually(lambda: named(spans, "inside the task"), timeout=10)
    [run] = named(spans, "fairque.run tests.testapp.tasks.traced_inside")
    assert inner.parent is not None and inner.parent.span_id == run.context.span_id


def test_batch_push_one_span_for_the_batch(make_config: Any, spans: InMemorySpanExporter) -> None:
    cfg = config(make_config)
    queue = TaskQueue(cfg)
    tasks = [t.add(i, i) for i in range(3)]
    queue.push_batch(tasks, "org:7")
    [batch] = named(spans, "fairque.enqueue_batch")
    assert batch.kind is SpanKind.PRODUCER and batch.attributes["messaging.batch.message_count"] == 3
    with running_worker(cfg, "w1"):
        for task in tasks:
            queue.result(task.task_id, user_id="org:7").wait(timeout=30)
        runs = eventually(lambda: len(r := named(spans, "fairque.run tests.testapp.tasks.add")) == 3 and r,
                          timeout=10)
    assert {r.parent.span_id for r in runs} == {batch.context.span_id}


def test_a_worker_subprocess_continues_the_trace(make_config: Any, spans: InMemorySpanExporter,
                                                 tmp_path: Path, redis_client: redis.Redis) -> None:
    """The run span is made in another process (exported to a file): same trace, enqueue span as parent."""
    cfg = config(make_config)
    queue = TaskQueue(cfg)
    task = t.add(20, 22)
    queue.push(task, "org:7")
    [enqueue] = named(spans, "fairque.enqueue tests.testapp.tasks.add")
    out = tmp_path / "spans.jsonl"
    done = subprocess.run([sys.executable, "-c", WORKER_SCRIPT, REDIS_URL, str(out)], cwd=ROOT, env=command_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = [json.loads(line) for line in out.read_text().splitlines()]
    assert run["name"] == "fairque.run tests.testapp.tasks.add" and run["kind"] == "SpanKind.CONSUMER"
    assert run["context"]["trace_id"] == f"0x{enqueue.context.trace_id:032x}"
    assert run["parent_id"] == f"0x{enqueue.context.span_id:016x}"
    assert run["attributes"]["fairque.outcome"] == "success" and run["attributes"]["fairque.tenant"] == "org:7"
    assert queue.get_result(task.task_id, user_id="org:7")["return_value"] == 42  # type: ignore[index]


WORKER_SCRIPT = textwrap.dedent('''
    import sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        def __init__(self, path):
            self.path = path
        def export(self, spans):
            with open(self.path, "a") as fh:
                for span in spans:
                    fh.write(span.to_json(indent=None) + "\\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(sys.argv[2])))
    trace.set_tracer_provider(provider)

    from fairque_django.core.config import FairQueueConfig
    from fairque_django.core.worker import Worker
    import tests.testapp.tasks  # registers the tasks

    config = FairQueueConfig.from_dict({"redis": {"url": sys.argv[1]},
                                        "workers": [{"id": "w1", "assigned_users": ["*"]}]})
    Worker(config, worker_id="w1", burst=True, install_signal_handlers=False).start()
''')


HIDDEN = textwrap.dedent('''
    import json, sys
    sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
    from fairque_django.core import tracing
    from fairque_django.core.config import FairQueueConfig
    from fairque_django.core.queue import TaskQueue
    from fairque_django.core.worker import Worker
    import tests.testapp.tasks as t

    config = FairQueueConfig.from_dict({"redis": {"url": sys.argv[1]},
                                        "workers": [{"id": "w1", "assigned_users": ["*"]}]})
    queue = TaskQueue(config)
    task = t.add(1, 2)
    queue.push(task, "org:1")
    body = json.loads(queue.client.hget(queue.keys.task(task.task_id), "b"))
    Worker(config, worker_id="w1", burst=True, install_signal_handlers=False).start()
    print(json.dumps({"enabled": tracing.ENABLED, "trace" : "trace" in body,
                      "result": queue.get_result(task.task_id, user_id="org:1")["return_value"]}))
''')


def test_without_opentelemetry_nothing_changes(redis_client: redis.Redis) -> None:
    done = subprocess.run([sys.executable, "-c", HIDDEN, REDIS_URL], cwd=ROOT, env=command_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"enabled": False, "trace": False, "result": 3}


def test_api_without_a_provider_writes_no_trace(make_config: Any) -> None:
    """OpenTelemetry installed but no SDK provider configured: no-op spans, the body is unchanged."""
    queue = TaskQueue(config(make_config))
    task = t.add(1, 1)
    queue.push(task, "org:1")
    body = json.loads(queue.client.hget(queue.keys.task(task.task_id), "b"))
    assert "trace" not in body and task.trace is None


def test_a_garbage_trace_field_never_fails_the_task(make_config: Any, spans: InMemorySpanExporter) -> None:
    cfg = config(make_config)
    queue = TaskQueue(cfg)
    for garbage in ({"traceparent": "00-zz-yy-01"}, {"traceparent": 7}, "text", {str(i): "x" for i in range(20)}):
        task = t.add(1, 2)
        task.trace = garbage  # type: ignore[assignment]
        queue.push(task, "org:7")
        with running_worker(cfg, "w1"):
            assert queue.result(task.task_id, user_id="org:7").wait(timeout=30) == 3


def test_async_worker_coroutine_tasks_get_their_run_span(make_config: Any, spans: InMemorySpanExporter) -> None:
    import asyncio
    import threading

    from fairque_django.core.worker import AsyncWorker

    cfg = config(make_config)
    queue = TaskQueue(cfg)
    task = t.async_traced_inside()
    queue.push(task, "org:7")
    worker = AsyncWorker(cfg, worker_id="w1", burst=True, install_signal_handlers=False)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    [enqueue] = named(spans, "fairque.enqueue tests.testapp.tasks.async_traced_inside")
    [run] = named(spans, "fairque.run tests.testapp.tasks.async_traced_inside")
    [inner] = named(spans, "inside the task")
    assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
    assert inner.parent is not None and inner.parent.span_id == run.context.span_id
    assert run.attributes["fairque.outcome"] == "success"
