"""Tasks of the example shop. ``runfairworker`` imports every app's ``tasks.py``, so workers know
these functions; a queued task names one by import path and nothing else can run.

``process_order`` and ``send_confirmation`` hand data over through XCom, which is scoped to the
task's tenant: one organisation's tasks never see another's values. ``demo_work`` is the unit of
load of ``manage.py fairque_demo``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fairque_django import Priority, task, xcom_pull, xcom_push
from fairque_django.core.context import running_task

from .models import Order


def order_key(order_id: int) -> str:
    return f"order:{order_id}"


@task(priority=Priority.HIGH, max_retries=3)
def process_order(order_id: int) -> dict[str, Any]:
    """Process an order, share its summary through XCom and queue the confirmation."""
    order = Order.objects.get(pk=order_id)
    summary = {"order_id": order.pk, "item": order.item, "quantity": order.quantity,
               "total": str(order.total)}
    order.status = Order.Status.PROCESSED
    order.save(update_fields=["status"])
    xcom_push(order_key(order.pk), summary)
    # Runs as the same tenant (the running task's): nothing to pass.
    send_confirmation.enqueue(order.pk)
    return summary


@task(max_retries=3)
def send_confirmation(order_id: int) -> str:
    """Read the summary ``process_order`` left in XCom and record the confirmation."""
    summary = xcom_pull(order_key(order_id))
    if summary is None:
        raise LookupError(f"no XCom summary for order {order_id} (expired?)")
    message = (f"Order #{summary['order_id']}: {summary['quantity']} x {summary['item']}, "
               f"total {summary['total']} - confirmed")
    Order.objects.filter(pk=order_id).update(status=Order.Status.CONFIRMED, confirmation=message)
    return message


@task(max_retries=0)
def demo_work(run: str, label: str, sleep_ms: float) -> None:
    """The demo's task: note how long it waited since it was enqueued, then "work" for sleep_ms.

    ``label`` is the organisation that submitted it (in the demo's FIFO baseline every task is
    queued under one shared user id, so the running user alone would not say).
    """
    running = running_task()
    assert running is not None and running.queue is not None, "demo_work runs inside a worker"
    waited = time.time() - running.task.created_at
    time.sleep(sleep_ms / 1000.0)
    queue = running.queue
    record = [label, running.task.user_id, round(waited * 1000.0, 3), time.time(), running.task.worker_id]
    queue.client.rpush(f"{queue.keys.base}:demo:{run}", json.dumps(record))
