"""A Django task on a queue that the test settings' ``TASKS["default"]["QUEUES"]`` lack: importing
this module fails (the task framework validates a task when it is declared), and ``manage.py
check`` must say so (tests/django/test_checks.py, E105). Imported only by that test."""

from __future__ import annotations

from fairque_django.compat import task


@task(queue_name="reports")
def monthly_report(month: str) -> str:
    return f"report {month}"
