"""A real headless Chromium clicks through the DLQ requeue flow of the FairQueue admin.

Needs Debian's ``chromium`` at /usr/bin/chromium (CI installs it) and the ``playwright`` Python
package; a missing browser fails the test instead of skipping it. Screenshots of the pages go
to ``docs/images/``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fairque_django.conf import get_config, get_queue
from fairque_django.core.models import Priority, Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.worker import Worker
from tests.testapp import tasks as t

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_client")]

CHROMIUM = os.environ.get("FAIRQUE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"




@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "s3cret-pw")


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is required for the browser test: {CHROMIUM} does not exist "
                    "(apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM is not used meanwhile.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.set_default_timeout(15_000)
        yield context.new_page()
        context.close()
        browser.close()


def dead_letter(queue: TaskQueue, task: Task, user: str, error: BaseException) -> str:
    queue.push(task, user_id=user)
    popped = queue.pop("worker-001")
    assert popped is not None and popped.task_id == task.task_id
    tb = ('Traceback (most recent call last):\n  File "tests/testapp/tasks.py", line 33, in record\n'
          f"{type(error).__name__}: {error}")
    assert queue.fail(popped, error, traceback=tb, retry=False) == "dead"
    return task.task_id


def seed(queue: TaskQueue) -> str:
    """Dead tasks (one of them the target) and some waiting work; returns the target's id."""
    target = dead_letter(queue, t.record("browser-requeue"), "user:1",
                         ConnectionError("SMTP server refused the connection"))
    dead_letter(queue, t.record("invoice-7"), "user:2", KeyError("customer_id"))
    dead_letter(queue, t.record("report-3"), "user:3", TimeoutError("report took too long"))
    dead_letter(queue, t.record("sync-9"), "user:4", ValueError("bad date '2024-13-01'"))
    base = int(time.time() * 1000) - 90_000
    for i, task_id in enumerate([d.task_id for d in reversed(queue.get_dlq())]):
        queue.client.zadd(queue.keys.dlq, {task_id: base + i * 7_000})  # spread the death times
    queue.client.zadd(queue.keys.dlq, {target: base + 60_000})
    for i in range(3):
        queue.push(t.record(f"u2-{i}"), user_id="user:2")
    queue.push(t.urgent("u3-critical"), user_id="user:3")
    for i in range(2):
        queue.push(t.record(f"u3-{i}"), user_id="user:3")
    for i in range(5):
        queue.push(t.record(f"u5-{i}"), user_id="user:5")
    queue.push(Task.create(user_id="user:4", func_name="tests.testapp.tasks.record", args=["later"],
                           priority=Priority.LOW, delay_seconds=900))
    return target


def shot(page: Any, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.evaluate("document.fonts.ready.then(() => true)")
    page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=True)


def test_requeue_a_dead_task_through_the_admin(live_server: Any, superuser: Any, page: Any) -> None:
    queue = get_queue()
    target = seed(queue)
    completed_before = queue.get_stats()["tasks_completed"]
    heartbeat = Worker(get_config(), worker_id="worker-002", install_signal_handlers=False)
    heartbeat.started_at = time.time() - 3600
    heartbeat.publish_health([])  # worker-002's real health record: "alive" on the dashboard

    # log in through the admin login form
    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "admin")
    page.fill("#id_password", "s3cret-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")

    # the admin index lists the FairQueue section; open the dashboard from it
    section = page.locator(".app-fairque_django")
    assert "FairQueue" in (section.text_content() or "")
    section.get_by_role("link", name="Dashboard").first.click()
    page.wait_for_selector("#fq-counters")
    first_dashboard = time.monotonic()  # stores the first counter snapshot for the rates
    assert page.locator("h1").inner_text() == "FairQueue dashboard"
    assert page.locator("#fq-dlq-size").inner_text() == "4"
    assert page.locator("tr.fq-worker[data-status=alive]").count() == 1

    # the dead-letter queue
    page.click("text=Dead-letter queue (4)")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 4
    shot(page, "dlq_list")

    # the dead task's page
    page.click(f"a:text-is('{target}')")
    page.wait_for_selector("#fq-task")
    assert target in page.locator("#fq-task").inner_text()
    assert "SMTP server refused the connection" in page.content()
    shot(page, "dlq_detail")

    # requeue: first a confirmation page, then the action
    page.click("#fq-requeue")
    page.wait_for_selector("#fq-confirm")
    assert "Are you sure" in page.locator("h1").inner_text()
    assert target in page.locator("#fq-affected").inner_text()
    assert queue.get_dead(target) is not None  # nothing changed yet
    shot(page, "confirm")
    page.click("#fq-confirm")
    page.wait_for_selector(".messagelist")
    assert "Requeued 1 dead task." in page.locator(".messagelist").inner_text()
    assert page.locator("#result_list tbody tr").count() == 3
    state = queue.get_task_state(target)
    assert state is not None and state["st"] == "queued"

    # a worker runs it (and the other waiting work of the users it serves)
    worker = Worker(get_config(), worker_id="worker-001", burst=True, install_signal_handlers=False)
    runner = threading.Thread(target=worker.start, daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the burst worker did not finish"
    log = [x.decode() if isinstance(x, bytes) else x for x in queue.client.lrange(t.LOG, 0, -1)]
    assert "user:1|browser-requeue" in log
    assert queue.get_task_state(target) is None  # done and forgotten
    assert queue.get_stats()["tasks_completed"] > completed_before
    assert queue.get_dead(target) is None

    # new work arrives; the dashboard shows it, with rates measured since the first visit
    for i in range(4):
        queue.push(t.record(f"late-u2-{i}"), user_id="user:2")
    queue.push(t.urgent("late-u3"), user_id="user:3")
    queue.push(t.record("late-u3"), user_id="user:3")
    for i in range(7):
        queue.push(t.record(f"late-u5-{i}"), user_id="user:5")
    time.sleep(max(0.0, 11 - (time.monotonic() - first_dashboard)))
    heartbeat.publish_health([])
    page.goto(f"{live_server.url}/admin/fairque_django/fairqueue/")
    page.wait_for_selector("#fq-counters")
    assert page.locator("#fq-dlq-size").inner_text() == "3"
    assert "Rates: counter increase over the last" in page.locator("#fq-rate-note").inner_text()
    users = page.locator("tr.fq-user").all_inner_texts()
    assert [u.split()[0] for u in users] == ["user:5", "user:2", "user:3", "user:4"]  # busiest first
    shot(page, "dashboard")
