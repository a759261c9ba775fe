"""A real headless Chromium clicks through the DLQ requeue flow of the FairQueue admin, and checks
that the dashboard and the DLQ pages fit the window (no clipped column) at 1280, 1440 and 1920 px.

Needs Debian's ``chromium`` at /usr/bin/chromium (``python3 run.py tests`` installs it when it
runs as root with apt-get; ``FAIRQUE_CHROMIUM`` names another binary) and the ``playwright``
Python package. A missing browser skips these tests with the reason in the summary, and fails
them under ``CI=true``. Screenshots go to the test's temporary directory; ``python3 run.py
screenshots`` sets ``FAIRQUE_SCREENSHOTS=docs/images`` to retake the ones the docs show.
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
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
LONG_FUNC = "tests.testapp.tasks.reconcile_customer_invoices_with_the_payment_provider_settlement_report"
LONG_ERROR = ("could not reach https://payments.example.com/v2/settlements?since=2024-01-01&page=17 "
              "after 3 attempts: connection reset by peer while reading the response body")


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: the test's temporary directory, or $FAIRQUE_SCREENSHOTS
    (``python3 run.py screenshots`` points it at docs/images)."""
    target = os.environ.get("FAIRQUE_SCREENSHOTS")
    return Path(target) if target else tmp_path


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "s3cret-pw")


def require_chromium() -> None:
    """Skip loudly when the browser is missing; under CI=true a missing browser is a failure."""
    if Path(CHROMIUM).exists():
        return
    reason = (f"Chromium not found at {CHROMIUM} and it could not be installed (not root / no apt-get / "
              "apt-get failed; `python3 run.py tests` as root installs it, FAIRQUE_CHROMIUM names another "
              "binary): browser tests not run")
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM is not used meanwhile.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def new_page(browser: Any, width: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(15_000)
    return context.new_page()


@pytest.fixture
def page(browser: Any) -> Any:
    return new_page(browser, 1440)


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


def shot(page: Any, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.evaluate("document.fonts.ready.then(() => true)")
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


# Finds what does not fit: a page wider than the window, a table wider than its container, a cell
# whose right edge lies past its container or the window, and text cut by an ellipsis whose full
# wording is not in a title. Returns the problems and the cut texts (with their titles).
FIT_JS = """() => {
  const problems = [], cut = [];
  const vw = document.documentElement.clientWidth;
  const name = (el) => (el.id || (el.closest('[id]') || {}).id || el.tagName).toString();
  const text = (el) => (el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
  if (document.documentElement.scrollWidth > vw)
    problems.push(`page is ${document.documentElement.scrollWidth}px wide in a ${vw}px window`);
  const check = (el, box, what) => {
    const r = el.getBoundingClientRect();
    const right = Math.min(box.getBoundingClientRect().right, vw);
    if (r.width > 0 && r.right > right + 1)
      problems.push(`${what} "${text(el)}" ends at ${Math.round(r.right)}px, past ${Math.round(right)}px`);
  };
  const tables = document.querySelectorAll('#content table');
  for (const table of tables) {
    const box = table.parentElement;
    if (table.scrollWidth > box.clientWidth + 1)
      problems.push(`${name(table)}: table is ${table.scrollWidth}px wide, its container ${box.clientWidth}px`);
    for (const cell of table.querySelectorAll('th, td')) check(cell, box, `${name(table)}: cell`);
  }
  const main = document.querySelector('#content-main') || document.querySelector('#content');
  for (const el of main.querySelectorAll('.form-row, .readonly, pre, label, .object-tools, .submit-row'))
    check(el, main, `${name(el)}: ${el.tagName.toLowerCase()}`);
  for (const el of main.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (style.textOverflow !== 'ellipsis' || el.scrollWidth <= el.clientWidth + 1) continue;
    const holder = el.closest('[title]');
    const title = holder ? holder.title : '';
    cut.push({text: text(el), title});
    if (!title) problems.push(`${name(el)}: "${text(el)}" is cut without a title`);
  }
  return {problems, cut, tables: tables.length};
}"""


def assert_fits(page: Any, where: str) -> list[dict[str, str]]:
    """Nothing on the page is clipped; returns the texts cut by an ellipsis."""
    report = page.evaluate(FIT_JS)
    assert report["problems"] == [], f"{where}: {report['problems']}"
    return list(report["cut"])


def login(page: Any, url: str) -> None:
    page.goto(f"{url}/admin/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "admin")
    page.fill("#id_password", "s3cret-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


@pytest.mark.parametrize("width", [1280, 1920])
def test_admin_pages_fit_the_window(live_server: Any, superuser: Any, browser: Any, shots: Path,
                                    width: int) -> None:
    queue = get_queue()
    long_one = dead_letter(queue, Task.create(user_id="user:3", func_name=LONG_FUNC, args=["march"]),
                           "user:3", ConnectionError(LONG_ERROR))
    seed(queue)
    queue.push(Task.create(user_id="user:5", func_name=LONG_FUNC, args=[], priority=Priority.CRITICAL))
    running = queue.pop("worker-002")
    assert running is not None and running.func_name == LONG_FUNC
    assert queue.set_progress(running, 0.42, "42 of 100 rows imported from the March invoices export")
    Worker(get_config(), worker_id="worker-002", install_signal_handlers=False).publish_health([running])
    page = new_page(browser, width)
    login(page, live_server.url)

    page.goto(f"{live_server.url}/admin/fairque_django/fairqueue/")
    page.wait_for_selector("#fq-workers")
    assert page.evaluate("document.documentElement.clientWidth") == width
    cut = assert_fits(page, f"dashboard at {width} px")
    shot(page, shots, f"dashboard-{width}")
    assert any(c["title"].startswith(f"{LONG_FUNC} (user:5)") for c in cut), cut  # the running task
    assert page.locator("#fq-workers progress").get_attribute("value") == "42"  # its progress
    assert any(c["title"].startswith("42%: 42 of 100 rows") for c in cut), cut

    page.goto(f"{live_server.url}/admin/fairque_django/deadletterqueue/")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 5
    cut = assert_fits(page, f"DLQ list at {width} px")
    shot(page, shots, f"dlq_list-{width}")
    # the long cells are cut on one line, their full text in a title
    row = page.locator("#result_list tbody tr", has_text=long_one[:8])
    assert row.locator("td.field-func").get_attribute("title") == LONG_FUNC
    assert LONG_ERROR in (row.locator("td.field-error").get_attribute("title") or "")
    heights = page.eval_on_selector_all("#result_list tbody tr", "rows => rows.map(r => r.offsetHeight)")
    assert max(heights) < 2 * min(heights), f"a row wraps onto several lines: {heights}"
    if width == 1280:
        assert any(c["title"] == LONG_FUNC for c in cut), cut

    page.click(f"a:text-is('{long_one}')")
    page.wait_for_selector("#fq-task")
    assert LONG_FUNC in page.locator("#fq-task").inner_text()
    assert_fits(page, f"DLQ task at {width} px")
    shot(page, shots, f"dlq_detail-{width}")


def test_requeue_a_dead_task_through_the_admin(live_server: Any, superuser: Any, page: Any, shots: Path) -> None:
    queue = get_queue()
    target = seed(queue)
    completed_before = queue.get_stats()["tasks_completed"]
    heartbeat = Worker(get_config(), worker_id="worker-002", install_signal_handlers=False)
    heartbeat.started_at = time.time() - 3600
    heartbeat.publish_health([])  # worker-002's real health record: "alive" on the dashboard

    # log in through the admin login form
    login(page, live_server.url)

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
    assert_fits(page, "dlq_list at 1440 px")
    shot(page, shots, "dlq_list")

    # the dead task's page
    page.click(f"a:text-is('{target}')")
    page.wait_for_selector("#fq-task")
    assert target in page.locator("#fq-task").inner_text()
    assert "SMTP server refused the connection" in page.content()
    assert_fits(page, "dlq_detail at 1440 px")
    shot(page, shots, "dlq_detail")

    # requeue: first a confirmation page, then the action
    page.click("#fq-requeue")
    page.wait_for_selector("#fq-confirm")
    assert "Are you sure" in page.locator("h1").inner_text()
    assert target in page.locator("#fq-affected").inner_text()
    assert queue.get_dead(target) is not None  # nothing changed yet
    shot(page, shots, "confirm")
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
    # the scenario: rates are measured over the shared 10 s counter snapshots, so the second visit
    # must come at least one snapshot interval after the first (no condition can stand in for time)
    time.sleep(max(0.0, 11 - (time.monotonic() - first_dashboard)))
    heartbeat.publish_health([])
    page.goto(f"{live_server.url}/admin/fairque_django/fairqueue/")
    page.wait_for_selector("#fq-counters")
    assert page.locator("#fq-dlq-size").inner_text() == "3"
    assert "Rates: counter increase over the last" in page.locator("#fq-rate-note").inner_text()
    users = page.locator("tr.fq-user").all_inner_texts()
    assert [u.split()[0] for u in users] == ["user:5", "user:2", "user:3", "user:4"]  # busiest first
    assert_fits(page, "dashboard at 1440 px")
    shot(page, shots, "dashboard")


def test_the_schedule_page_runs_a_schedule_now(live_server: Any, superuser: Any, page: Any, shots: Path,
                                               settings: Any) -> None:
    """The dashboard links to the schedule page; it lists the schedules with their last and next
    tick; "Run now" asks for confirmation, then pushes the schedule's tasks."""
    from fairque_django import conf

    settings.TIME_ZONE = "Europe/Berlin"
    settings.FAIRQUE = {**settings.FAIRQUE, "SCHEDULES": {
        "nightly-invoices": {"task": "tests.testapp.tasks.record", "cron": "30 2 * * *", "args": ["invoices"],
                             "tenants": ["user:1", "user:2", "user:3"]},
        "cache-warmup": {"task": "tests.testapp.tasks.record", "every": 300, "args": ["warm"], "user": "user:4"},
    }}
    conf.reset()
    queue = get_queue()
    login(page, live_server.url)
    page.goto(f"{live_server.url}/admin/fairque_django/fairqueue/")
    page.click("#fq-schedules-link")
    page.wait_for_selector("#fq-schedules")
    assert page.locator("#fq-schedules tbody tr").count() == 2
    row = page.locator("#fq-schedule-nightly-invoices")
    assert "cron 30 2 * * * (Europe/Berlin)" in row.inner_text() and "user:1, user:2, user:3" in row.inner_text()
    assert_fits(page, "schedules at 1440 px")
    shot(page, shots, "schedules")

    page.click("#fq-run-nightly-invoices")
    page.wait_for_selector("#fq-confirm")
    assert "Are you sure you want to run schedule nightly-invoices now?" in page.locator("#content").inner_text()
    assert queue.get_stats()["tasks_pushed"] == 0  # nothing before the confirmation
    page.click("#fq-confirm")
    page.wait_for_selector("ul.messagelist")
    assert "pushed 3 tasks now" in page.locator("ul.messagelist").inner_text()
    assert queue.get_stats()["tasks_pushed"] == 3

    page.click("#fq-pause-cache-warmup")
    page.click("#fq-confirm")
    page.wait_for_selector("#fq-resume-cache-warmup")
    assert "paused" in page.locator("#fq-schedule-cache-warmup").inner_text()


def test_the_tenant_page_limits_and_pauses_a_tenant(live_server: Any, superuser: Any, page: Any,
                                                     shots: Path) -> None:
    """The dashboard's tenant row leads to the tenant page: depth per priority, running tasks with
    their workers and progress, queued and delayed tasks, limits and where they come from; the
    limits form, "Cancel selected" and "Pause" ask for confirmation, then act."""
    queue = get_queue()
    queue.set_tenant_limits("user:2", concurrency=2, rate="600/m", burst=5)
    for i in range(2):
        queue.push(Task.create(user_id="user:2", func_name=LONG_FUNC, args=[f"march-{i}"]))
    queue.push(t.urgent("refund-7"), user_id="user:2")
    for i, priority in enumerate([Priority.HIGH, Priority.HIGH, Priority.NORMAL, Priority.LOW, Priority.VERY_LOW]):
        queue.push(Task.create(user_id="user:2", func_name="tests.testapp.tasks.send_invoice", args=[i],
                               priority=priority))
    for i in range(2):
        queue.push(Task.create(user_id="user:2", func_name="tests.testapp.tasks.remind_customer", args=[i],
                               delay_seconds=900 + 600 * i))
    for i in range(3):
        queue.push(t.record(f"u1-{i}"), user_id="user:1")
    running = []
    while len(running) < 2:  # the critical task first, then the normal lane, until the cap holds
        task = queue.pop("worker-001")
        assert task is not None
        if task.user_id == "user:2":
            running.append(task)
    assert queue.get_tenant_limits("user:2")["held"] == "cap"
    assert queue.set_progress(running[1], 0.6, "60 of 100 invoices sent")
    Worker(get_config(), worker_id="worker-001", install_signal_handlers=False).publish_health(running)

    login(page, live_server.url)
    page.goto(f"{live_server.url}/admin/fairque_django/fairqueue/")
    row = page.locator("tr.fq-user", has_text="user:2")
    assert "2 / 2" in row.locator("td.fq-cap").inner_text() and "at its cap" in row.inner_text()
    row.locator("a.fq-tenant-link").click()
    page.wait_for_selector("#fq-tenant-depth")
    assert page.locator("h1").inner_text() == "Tenant user:2"
    assert "2 / 2 at its cap" in page.locator("#fq-leased-cap").inner_text()
    assert page.locator("tr.fq-leased-task").count() == 2
    assert page.locator("#fq-tenant-leased progress").get_attribute("value") == "60"
    assert page.locator("tr.fq-queued-task").count() == 6 and page.locator("tr.fq-delayed-task").count() == 2
    assert "runtime" in page.locator("tr.fq-limit[data-limit=concurrency]").inner_text()
    assert "held: at its cap" in page.locator("#fq-tenant-state").inner_text()
    assert_fits(page, "tenant page at 1440 px")
    shot(page, shots, "tenant")

    page.fill("#fq-concurrency", "3")
    page.click("#fq-set-limits")
    page.wait_for_selector("#fq-confirm")
    assert "<strong>3</strong>" in page.locator("#fq-limit-changes").inner_html()
    assert queue.get_tenant_limits("user:2")["concurrency"] == 2  # nothing before the confirmation
    page.click("#fq-confirm")
    page.wait_for_selector("ul.messagelist")
    assert "Runtime limits of user:2 set" in page.locator("ul.messagelist").inner_text()
    assert queue.get_tenant_limits("user:2")["concurrency"] == 3
    assert "2 / 3" in page.locator("#fq-leased-cap").inner_text()

    later = page.locator("tr.fq-delayed-task").first
    later_id = later.locator("td.fq-mono").first.inner_text()
    later.locator("input[type=checkbox]").check()
    page.click("#fq-cancel-delayed")
    page.wait_for_selector("#fq-confirm")
    assert later_id in page.locator("#fq-affected").inner_text()
    page.click("#fq-confirm")
    page.wait_for_selector("ul.messagelist")
    assert "Cancelled 1 task." in page.locator("ul.messagelist").inner_text()
    assert page.locator("tr.fq-delayed-task").count() == 1
    assert queue.result(later_id, user_id="user:2").status.name == "CANCELLED"

    page.click("#fq-pause")
    page.wait_for_selector("#fq-confirm")
    assert "Are you sure you want to pause tenant user:2?" in page.locator("#content").inner_text()
    shot(page, shots, "tenant_confirm")
    page.click("#fq-confirm")
    page.wait_for_selector("#fq-resume")
    assert queue.is_paused("user:2") and "paused" in page.locator("#fq-paused").inner_text()
    assert queue.get_tenant_limits("user:2")["held"] == "paused"
