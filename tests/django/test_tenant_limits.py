"""The Django side of tenant limits: ``fairque_django.set_tenant_limits`` & co. on the configured
queue, and ``manage.py fairque_tenant`` (issue 15), against real Redis."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import fairque_django
from fairque_django import Task
from fairque_django.conf import get_queue

pytestmark = pytest.mark.usefixtures("redis_client")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("fairque_tenant", *args, stdout=out)
    return out.getvalue()


def test_the_helpers_use_the_configured_queue() -> None:
    state = fairque_django.set_tenant_limits("user:1", concurrency=1, rate="5/s")
    assert (state["concurrency"], state["rate"], state["concurrency_source"]) == (1, "5/s", "runtime")
    queue = get_queue()
    for _ in range(3):
        queue.push(Task.create(payload={}), user_id="user:1")
    assert len(queue.pop_many(3, "worker-001")) == 1
    assert fairque_django.get_tenant_limits("user:1")["leased"] == 1
    fairque_django.pause_tenant("user:1")
    assert fairque_django.is_paused("user:1")
    fairque_django.resume_tenant("user:1")
    assert not fairque_django.is_paused("user:1")
    assert fairque_django.clear_tenant_limits("user:1")["concurrency_source"] == "default"


def test_the_command_shows_and_changes_a_tenant() -> None:
    out = run("user:2", "--concurrency", "2", "--rate", "100/m", "--burst", "3")
    assert "concurrency  2  (runtime)" in out and "100/m" in out and "burst 3 (runtime)" in out
    state: dict[str, Any] = json.loads(run("user:2", "--pause", "--json"))
    assert state["paused"] is True and state["concurrency"] == 2
    assert "paused       no" in run("user:2", "--resume")
    state = json.loads(run("user:2", "--concurrency", "none", "--json"))
    assert state["concurrency"] is None and state["concurrency_source"] == "runtime"
    state = json.loads(run("user:2", "--clear", "--json"))
    assert state["concurrency_source"] == "default" and state["rate"] is None
    assert "tenant       user:2" in run("user:2", "--show")


@pytest.mark.parametrize("args", [("user:2", "--concurrency", "0"), ("user:2", "--rate", "fast"),
                                  ("bad id",), ("user:2", "--clear", "--burst", "2")])
def test_the_command_refuses_bad_input(args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError):
        run(*args)


def test_the_command_cancels_a_tenants_queued_tasks() -> None:
    queue = get_queue()
    for _ in range(3):
        queue.push(Task.create(payload={}), user_id="user:3")
    queue.push(Task.create(payload={}, delay_seconds=3600), user_id="user:3")
    running = queue.pop("worker-001")
    assert running is not None and running.user_id == "user:3"
    kept = Task.create(payload={})
    queue.push(kept, user_id="user:1")
    out = run("user:3", "--cancel-queued")
    assert "cancelled    3 queued or delayed task(s)" in out  # 2 queued, 1 delayed
    assert queue.user_depth("user:3")["normal"] == 0
    state = queue.get_task_state(running.task_id)
    assert state is not None and state["st"] == "leased"  # running tasks go on
    assert (queue.get_task_state(kept.task_id) or {}).get("st") == "queued"  # another tenant's stay
    assert json.loads(run("user:3", "--cancel-queued", "--json"))["cancelled"] == 0  # nothing left
