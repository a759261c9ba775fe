"""The admin's tenant page and its actions with Django's test client, against real Redis data."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from fairque_django.conf import get_queue
from fairque_django.core.models import Priority, Task
from fairque_django.core.queue import TaskQueue

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_client")]

TENANT = "org:1/eu&x=y#z%20+é"  # ":", "/", "&", "#", "%", "+": must round-trip through the URL
ACTION = "admin:fairque_tenant_action"
SELECTED = "_selected_action"


def page_url(tenant: str = TENANT, **params: Any) -> str:
    return reverse("admin:fairque_tenant") + "?" + urlencode({"id": tenant, **params})


WORKERS = [{"id": "worker-001", "assigned_users": ["*"], "poll_interval_seconds": 0.5}]


@pytest.fixture(autouse=True)
def every_tenant_served(settings: Any) -> None:
    settings.FAIRQUE = {**settings.FAIRQUE, "workers": WORKERS}


@pytest.fixture
def queue(every_tenant_served: None) -> TaskQueue:
    return get_queue()


def user_with(*codenames: str, name: str = "u") -> User:
    user: User = User.objects.create_user(name, password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="fairque_django"))
    return user


@pytest.fixture
def login(client: Client) -> Callable[..., Client]:
    def do(*codenames: str) -> Client:
        client.force_login(user_with(*codenames))
        return client

    return do


@pytest.fixture
def viewer(login: Callable[..., Client]) -> Client:
    return login("view_fairqueue", "manage_fairqueue")  # manage_fairqueue is not manage_tenants


@pytest.fixture
def admin(login: Callable[..., Client]) -> Client:
    return login("view_fairqueue", "manage_tenants")


def push(queue: TaskQueue, n: int, *, user: str = TENANT, func: str = "tests.testapp.tasks.record",
         priority: Priority = Priority.NORMAL, delay: float | None = None) -> list[str]:
    ids = []
    for _ in range(n):
        task = Task.create(user_id=user, func_name=func, args=["x"], priority=priority,
                           execute_after=(__import__("time").time() + delay) if delay else None)
        queue.push(task)
        ids.append(task.task_id)
    return ids


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- the page -------------------------------------------------------------------------------
def test_the_page_shows_depth_per_priority_leases_limits_and_tasks(admin: Client, queue: TaskQueue) -> None:
    queue.set_tenant_limits(TENANT, concurrency=2, rate="50/m")
    crit = push(queue, 2, priority=Priority.CRITICAL)
    high = push(queue, 3, priority=Priority.HIGH, func="app.tasks.send_invoice")
    low = push(queue, 1, priority=Priority.VERY_LOW)
    later = push(queue, 2, delay=3600, func="app.tasks.remind")
    push(queue, 4, user="someone:else", delay=3600)
    leased = queue.pop("worker-001")
    assert leased is not None and leased.task_id == crit[0]
    queue.set_progress(leased, 0.25, "a quarter")
    body = admin.get(page_url()).content.decode()
    depth = re.search(r'id="fq-tenant-depth".*?</table>', body, re.S)
    assert depth is not None
    cells = re.findall(r"<th scope=\"row\">Ready: ([^<]+)</th><td class=\"fq-num\">(\d+)</td>", depth.group(0))
    assert dict(cells) == {"Critical": "1", "Priority 5": "0", "Priority 4": "3", "Priority 3": "0",
                           "Priority 2": "0", "Priority 1": "1"}
    assert 'id="fq-leased-cap">1 / 2' in body
    # limits and where they come from
    assert re.search(r'data-limit="concurrency"><th scope="row">Concurrency cap</th><td>2</td><td class="fq-mono">'
                     r"runtime</td>", body)
    assert re.search(r'data-limit="rate">.*?<td>50/m</td><td class="fq-mono">runtime</td>', body)
    # the leased task with its worker and progress
    leased_rows = re.findall(r'<tr class="fq-leased-task">.*?</tr>', body, re.S)
    assert len(leased_rows) == 1 and leased.task_id in leased_rows[0] and "worker-001" in leased_rows[0]
    assert "a quarter" in leased_rows[0] and 'value="25"' in leased_rows[0]
    # queued in serving order: critical first, then priority 4, then 1; delayed: only this tenant's
    queued = re.findall(r'<tr class="fq-queued-task">.*?title="([^"]+)"', body, re.S)
    remaining_crit = [i for i in crit if i != leased.task_id]
    assert queued == [*remaining_crit, *high, *low]
    delayed = re.findall(r'<tr class="fq-delayed-task">.*?title="([^"]+)"', body, re.S)
    assert sorted(delayed) == sorted(later)
    # the tenant's links and actions
    assert reverse("admin:fairque_dlq") + "?" + urlencode({"user": TENANT}) in body.replace("&amp;", "&")
    assert 'id="fq-pause"' in body and 'id="fq-cancel-all"' in body and 'id="fq-limits-form"' in body


def test_the_search_finds_a_task_id_or_a_function_name(admin: Client, queue: TaskQueue) -> None:
    invoices = push(queue, 2, func="app.tasks.send_invoice")
    others = push(queue, 3, func="app.tasks.resize")
    later = push(queue, 1, func="app.tasks.send_invoice", delay=3600)
    other_tenant = push(queue, 1, user="org:2", func="app.tasks.send_invoice")

    def listed(q: str, kind: str) -> list[str]:
        body = admin.get(page_url(q=q)).content.decode()
        return re.findall(rf'<tr class="fq-{kind}-task">.*?title="([^"]+)"', body, re.S)

    assert listed("INVOICE", "queued") == invoices
    assert listed("invoice", "delayed") == later
    assert listed(others[1], "queued") == [others[1]]
    assert listed(others[1], "delayed") == []
    assert listed(other_tenant[0], "queued") == []  # another tenant's id finds nothing
    assert listed("nothing like it", "queued") == []


def test_queued_tasks_are_paged_with_bounded_windows(admin: Client, queue: TaskQueue) -> None:
    crit = push(queue, 30, priority=Priority.CRITICAL)
    normal = push(queue, 30)
    order = [*crit, *normal]

    def listed(qp: int) -> list[str]:
        body = admin.get(page_url(qp=qp)).content.decode()
        return re.findall(r'<tr class="fq-queued-task">.*?title="([^"]+)"', body, re.S)

    assert listed(1) == order[:25]
    assert listed(2) == order[25:50]  # across the end of the critical lane
    assert listed(3) == order[50:]
    body = admin.get(page_url(qp=2)).content.decode()
    assert "60 queued tasks" in body
    assert f'href="{page_url(qp=3)}"'.replace("&", "&amp;") in body


def test_a_tenant_id_round_trips_and_a_bad_one_is_refused(admin: Client, queue: TaskQueue) -> None:
    push(queue, 1)
    response = admin.get(page_url())
    assert response.status_code == 200 and response.context["tenant"] == TENANT
    bad = admin.get(page_url("{bad}"), follow=True)
    assert bad.redirect_chain[-1][0] == reverse("admin:fairque_dashboard")
    assert any("No such tenant" in m for m in messages_of(bad))
    assert admin.get(reverse("admin:fairque_tenant")).status_code == 302  # no id at all


def test_the_dashboard_links_each_tenant_to_its_page_and_shows_leased_over_cap(admin: Client,
                                                                                 queue: TaskQueue) -> None:
    queue.set_tenant_limits(TENANT, concurrency=1)
    queue.pause_tenant("org:9")
    push(queue, 2)
    push(queue, 1, user="org:9")
    assert queue.pop("worker-001") is not None
    body = admin.get(reverse("admin:fairque_dashboard")).content.decode()
    row = re.search(r'<tr class="fq-user">\s*<th scope="row"><a href="([^"]+)"[^>]*>' + re.escape(html.escape(TENANT))
                    + r".*?</tr>", body, re.S)
    assert row is not None
    assert row.group(1).replace("&amp;", "&") == page_url()
    assert '<td class="fq-num fq-cap">1 / 1</td>' in row.group(0) and "at its cap" in row.group(0)
    paused = re.search(r'<tr class="fq-user">.*?>org:9</a>.*?</tr>', body, re.S)
    assert paused is not None and "<strong>paused</strong>" in paused.group(0)
    assert "Tenants paused: 1" in body


# --- permissions, methods, CSRF ---------------------------------------------------------------
def test_viewing_needs_view_fairqueue_and_acting_needs_manage_tenants(login: Callable[..., Client],
                                                                       queue: TaskQueue) -> None:
    push(queue, 1)
    client = login()
    assert client.get(page_url()).status_code == 403
    client.logout()
    client.force_login(user_with("view_fairqueue", "manage_fairqueue", name="manager"))
    body = client.get(page_url()).content.decode()
    assert 'id="fq-pause"' not in body and 'id="fq-limits-form"' not in body and SELECTED not in body
    for data in ({"action": "pause"}, {"action": "pause", "confirm": "yes"},
                 {"action": "limits", "concurrency": "1", "confirm": "yes"}):
        response = client.post(reverse(ACTION), {"tenant": TENANT, **data})
        assert response.status_code == 403
        assert "fairque_django.manage_tenants" in response.content.decode()
    assert not queue.is_paused(TENANT)
    assert queue.get_tenant_limits(TENANT)["concurrency_source"] == "default"


def test_actions_are_post_only(admin: Client) -> None:
    response = admin.get(reverse(ACTION) + "?" + urlencode({"tenant": TENANT, "action": "pause", "confirm": "yes"}))
    assert response.status_code == 405
    assert not get_queue().is_paused(TENANT)


def test_actions_reject_a_missing_csrf_token(queue: TaskQueue) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with("view_fairqueue", "manage_tenants"))
    for data in ({"action": "pause", "confirm": "yes"}, {"action": "clear", "confirm": "yes"},
                 {"action": "limits", "concurrency": "3", "confirm": "yes"}):
        assert client.post(reverse(ACTION), {"tenant": TENANT, **data}).status_code == 403
    assert not queue.is_paused(TENANT)
    page = client.get(page_url()).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    response = client.post(reverse(ACTION), {"tenant": TENANT, "action": "pause", "confirm": "yes",
                                             "csrfmiddlewaretoken": token.group(1)})
    assert response.status_code == 302 and queue.is_paused(TENANT)


def test_bad_requests_are_refused(admin: Client, queue: TaskQueue) -> None:
    assert admin.post(reverse(ACTION), {"tenant": "{x}", "action": "pause", "confirm": "yes"}).status_code == 400
    assert admin.post(reverse(ACTION), {"tenant": TENANT, "action": "explode", "confirm": "yes"}).status_code == 400
    assert admin.post(reverse(ACTION), {"tenant": TENANT, "action": "pause", "confirm": "yes",
                                        "next": "https://evil.example/"})["Location"] == page_url()


# --- the actions: confirmation first, then the effect ------------------------------------------
def confirm_then_act(client: Client, data: dict[str, Any], check_page: Callable[[str], None]) -> Any:
    first = client.post(reverse(ACTION), {"tenant": TENANT, "next": page_url(), **data})
    assert first.status_code == 200
    body = first.content.decode()
    assert "Are you sure" in body and 'name="confirm" value="yes"' in body
    check_page(body)
    hidden = {k: html.unescape(v) for k, v in
              re.findall(r'<input type="hidden" name="(?!csrfmiddlewaretoken)([^"]+)" value="([^"]*)"', body)}
    multi = [html.unescape(v) for v in re.findall(rf'<input type="hidden" name="{SELECTED}" value="([^"]*)"', body)]
    return client.post(reverse(ACTION), {**hidden, **({SELECTED: multi} if multi else {})}, follow=True)


def test_pause_and_resume(admin: Client, queue: TaskQueue) -> None:
    push(queue, 2)

    def unchanged(body: str) -> None:
        assert "pause tenant <strong>org:1/eu&amp;x=y#z%20+é</strong>" in body
        assert not queue.is_paused(TENANT)  # the confirmation page changes nothing

    done = confirm_then_act(admin, {"action": "pause"}, unchanged)
    assert done.redirect_chain[-1][0] == page_url()
    assert queue.is_paused(TENANT) and queue.pop("worker-001") is None
    assert any("is paused" in m for m in messages_of(done))
    assert 'id="fq-resume"' in done.content.decode() and 'id="fq-paused"' in done.content.decode()
    confirm_then_act(admin, {"action": "resume"}, lambda body: None)
    assert not queue.is_paused(TENANT)
    assert queue.pop("worker-001") is not None


def test_set_and_clear_runtime_limits(admin: Client, queue: TaskQueue) -> None:
    def shows_the_change(body: str) -> None:
        table = re.search(r'id="fq-limit-changes".*?</table>', body, re.S)
        assert table is not None
        assert "<strong>3</strong>" in table.group(0) and "<strong>20/s</strong>" in table.group(0)
        assert "<strong>no limit</strong>" not in table.group(0)
        assert queue.get_tenant_limits(TENANT)["concurrency_source"] == "default"

    done = confirm_then_act(admin, {"action": "limits", "concurrency": "3", "rate": "20/s", "burst": ""},
                            shows_the_change)
    state = queue.get_tenant_limits(TENANT)
    assert (state["concurrency"], state["concurrency_source"], state["rate"], state["burst_source"]) == \
        (3, "runtime", "20/s", "default")
    assert 'id="fq-concurrency" value="3"' in done.content.decode()
    confirm_then_act(admin, {"action": "limits", "concurrency": "none"}, lambda body: None)
    state = queue.get_tenant_limits(TENANT)
    assert (state["concurrency"], state["concurrency_source"], state["rate"]) == (None, "runtime", "20/s")
    confirm_then_act(admin, {"action": "clear"}, lambda body: None)
    state = queue.get_tenant_limits(TENANT)
    assert (state["concurrency_source"], state["rate_source"]) == ("default", "default")


def test_limits_show_where_they_come_from(admin: Client, settings: Any) -> None:
    settings.FAIRQUE = {**settings.FAIRQUE, "queue": {"tenant_limits": {"org:*": {"concurrency": 4}}}}
    body = admin.get(page_url()).content.decode()
    assert re.search(r'data-limit="concurrency">.*?<td>4</td><td class="fq-mono">settings:org:\*</td>', body)
    assert re.search(r'data-limit="rate">.*?<td>no limit</td><td class="fq-mono">default</td>', body)


@pytest.mark.parametrize(("form", "error"), [
    ({"concurrency": "0"}, "Concurrency must be a whole number of at least 1 or none"),
    ({"concurrency": "two"}, "Concurrency must be a whole number"),
    ({"burst": "none"}, "Burst must be a whole number of at least 1, not"),
    ({"rate": "fast"}, "Rate: "),
    ({}, "Nothing to change"),
])
def test_a_wrong_limits_form_changes_nothing(admin: Client, queue: TaskQueue, form: dict[str, str],
                                             error: str) -> None:
    response = admin.post(reverse(ACTION), {"tenant": TENANT, "action": "limits", "confirm": "yes", **form},
                          follow=True)
    assert response.redirect_chain[-1][0] == page_url()
    assert any(error in m for m in messages_of(response)), messages_of(response)
    assert queue.get_tenant_limits(TENANT)["concurrency_source"] == "default"


# --- cancelling tasks -------------------------------------------------------------------------
def test_cancel_selected_queued_and_delayed_tasks(admin: Client, queue: TaskQueue) -> None:
    queued = push(queue, 3)
    delayed = push(queue, 2, delay=3600)
    theirs = push(queue, 1, user="org:2")
    selected = [queued[1], delayed[0], theirs[0], "no-such-task"]

    def lists_them(body: str) -> None:
        affected = re.search(r'id="fq-affected">(.*?)</ul>', body, re.S)
        assert affected is not None
        assert re.findall(r'class="fq-mono">([^<]+)</span>', affected.group(1)) == [queued[1], delayed[0]]
        assert re.findall(r'<li class="fq-mono">([^<]+)</li>', body) == [theirs[0], "no-such-task"]
        assert queue.get_task_state(queued[1]) is not None  # nothing before the confirmation

    done = confirm_then_act(admin, {"action": "cancel", SELECTED: selected}, lists_them)
    assert done.redirect_chain[-1][0] == page_url()
    assert any("Cancelled 2 tasks." in m for m in messages_of(done)), messages_of(done)
    state = queue.get_task_state(queued[1])
    assert state is None or state.get("st") == "cancelled"
    assert queue.result(queued[1], user_id=TENANT).status.name == "CANCELLED"
    assert queue.result(delayed[0], user_id=TENANT).status.name == "CANCELLED"
    other = queue.get_task_state(theirs[0])
    assert other is not None and other["st"] == "queued"  # another tenant's task is never touched
    left = re.findall(r'<tr class="fq-queued-task">.*?title="([^"]+)"', done.content.decode(), re.S)
    assert left == [queued[0], queued[2]]


def test_cancel_all_queued_tasks_of_the_tenant(admin: Client, queue: TaskQueue) -> None:
    push(queue, 4)
    push(queue, 2, delay=3600)
    kept = push(queue, 2, user="org:2")
    running = queue.pop("worker-001")
    assert running is not None and running.user_id == TENANT

    def counts_them(body: str) -> None:
        assert "now 3 queued and 2 delayed" in body
        assert queue.user_depth(TENANT)["normal"] == 3

    done = confirm_then_act(admin, {"action": "cancel_all"}, counts_them)
    assert any("Cancelled 5 queued or delayed tasks" in m for m in messages_of(done)), messages_of(done)
    detail_depth = queue.user_depth(TENANT)
    assert (detail_depth["critical"], detail_depth["normal"]) == (0, 0)
    state = queue.get_task_state(running.task_id)
    assert state is not None and state["st"] == "leased"  # running tasks go on
    assert all((queue.get_task_state(i) or {}).get("st") == "queued" for i in kept)


def test_cancel_needs_a_selection_and_manage_tenants(admin: Client, queue: TaskQueue,
                                                      login: Callable[..., Client]) -> None:
    ids = push(queue, 1)
    empty = admin.post(reverse(ACTION), {"tenant": TENANT, "action": "cancel", "confirm": "yes"}, follow=True)
    assert any("Select the tasks to cancel" in m for m in messages_of(empty))
    admin.logout()
    client = Client()
    client.force_login(user_with("view_fairqueue", "manage_fairqueue", name="manager"))
    for data in ({"action": "cancel", SELECTED: ids, "confirm": "yes"}, {"action": "cancel_all", "confirm": "yes"}):
        assert client.post(reverse(ACTION), {"tenant": TENANT, **data}).status_code == 403
    assert (queue.get_task_state(ids[0]) or {}).get("st") == "queued"
