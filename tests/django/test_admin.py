"""The FairQueue admin pages with Django's test client, against real Redis data."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse

from fairque_django import conf
from fairque_django.conf import get_queue
from fairque_django.core.models import Priority, Task
from fairque_django.core.queue import TaskQueue
from fairque_django.core.worker import Worker

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_client")]

DASHBOARD = "admin:fairque_dashboard"
DLQ = "admin:fairque_dlq"
REQUEUE = "admin:fairque_dlq_requeue"
DELETE = "admin:fairque_dlq_delete"
SELECTED = "_selected_action"




@pytest.fixture
def queue() -> TaskQueue:
    return get_queue()


def make_dead(queue: TaskQueue, user: str = "user:1", error: BaseException | None = None,
              func: str = "tests.testapp.tasks.record", args: list[Any] | None = None) -> str:
    """Push, lease and fail one task without retry: it lands in the dead-letter queue."""
    task = Task.create(user_id=user, func_name=func, args=args if args is not None else ["x"],
                       kwargs={"sleep": 0}, max_retries=2)
    queue.push(task)
    popped = queue.pop("worker-001")
    assert popped is not None and popped.task_id == task.task_id
    err = error if error is not None else ValueError("boom")
    assert queue.fail(popped, err, traceback="Traceback (most recent call last):\n  boom", retry=False) == "dead"
    return task.task_id


def is_dead(queue: TaskQueue, task_id: str) -> bool:
    return queue.get_dead(task_id) is not None


def user_with(*codenames: str, staff: bool = True, name: str = "u") -> User:
    user: User = User.objects.create_user(name, password="pw", is_staff=staff)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename,
                                                         content_type__app_label="fairque_django"))
    return user


@pytest.fixture
def login(client: Client) -> Callable[..., Client]:
    def do(*codenames: str, staff: bool = True) -> Client:
        client.force_login(user_with(*codenames, staff=staff))
        return client

    return do


@pytest.fixture
def manager(login: Callable[..., Client]) -> Client:
    return login("view_fairqueue", "manage_fairqueue")


@pytest.fixture
def viewer(login: Callable[..., Client]) -> Client:
    return login("view_fairqueue")


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def detail_url(task_id: str) -> str:
    return reverse("admin:fairque_dlq_detail", args=[task_id])


# --- permissions ----------------------------------------------------------------------------
def test_permissions_exist_with_their_names() -> None:
    perms = dict(Permission.objects.filter(content_type__app_label="fairque_django")
                 .values_list("codename", "name"))
    assert perms == {"view_fairqueue": "Can view FairQueue dashboard and DLQ",
                     "manage_fairqueue": "Can requeue and delete dead tasks",
                     "manage_tenants": "Can pause tenants, change their limits and cancel their tasks"}


@pytest.mark.parametrize("name", [DASHBOARD, DLQ])
def test_anonymous_is_sent_to_the_admin_login(client: Client, name: str) -> None:
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert "next=" in response["Location"]


def test_non_staff_is_sent_to_the_login_even_with_permissions(login: Callable[..., Client],
                                                              queue: TaskQueue) -> None:
    client = login("view_fairqueue", "manage_fairqueue", staff=False)
    task_id = make_dead(queue)
    for url in (reverse(DASHBOARD), reverse(DLQ), detail_url(task_id)):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    response = client.post(reverse(REQUEUE), {SELECTED: task_id, "confirm": "yes"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert is_dead(queue, task_id)


def test_staff_without_permission_gets_403(login: Callable[..., Client], queue: TaskQueue) -> None:
    client = login()
    task_id = make_dead(queue)
    for url in (reverse(DASHBOARD), reverse(DLQ), detail_url(task_id)):
        assert client.get(url).status_code == 403
    assert client.post(reverse(REQUEUE), {SELECTED: task_id, "confirm": "yes"}).status_code == 403
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200 and "FairQueue" not in index.content.decode()


def test_the_403_page_has_the_admin_look_and_names_the_permission(login: Callable[..., Client],
                                                                  queue: TaskQueue) -> None:
    task_id = make_dead(queue)
    client = login()
    for url in (reverse(DASHBOARD), reverse(DLQ), detail_url(task_id)):
        response = client.get(url)
        page = response.content.decode()
        assert response.status_code == 403, url
        assert 'id="site-name"' in page and "Django administration" in page  # the admin header
        assert 'class="breadcrumbs"' in page and "Permission denied" in page
        assert 'id="user-tools"' in page and reverse("admin:logout") in page
        assert re.search(r'id="fq-missing-permission">fairque_django\.view_fairqueue<', page), url
        assert "Can view FairQueue dashboard and DLQ" in page
        assert task_id not in page  # nothing of the queue leaks
    # a viewer who tries to act is told the manage permission is missing
    client.force_login(user_with("view_fairqueue", name="viewer"))
    response = client.post(reverse(REQUEUE), {SELECTED: task_id, "confirm": "yes"})
    assert response.status_code == 403
    assert 'id="fq-missing-permission">fairque_django.manage_fairqueue<' in response.content.decode()
    assert 'id="site-name"' in response.content.decode()
    assert is_dead(queue, task_id)


def test_viewer_sees_pages_but_cannot_act(viewer: Client, queue: TaskQueue) -> None:
    task_id = make_dead(queue)
    index = viewer.get(reverse("admin:index")).content.decode()
    assert "FairQueue" in index and reverse(DASHBOARD) in index and reverse(DLQ) in index
    assert viewer.get(reverse(DASHBOARD)).status_code == 200
    page = viewer.get(reverse(DLQ))
    assert page.status_code == 200 and task_id in page.content.decode()
    assert 'name="_selected_action"' not in page.content.decode()  # no action checkboxes
    assert "Requeue all" not in page.content.decode()
    detail = viewer.get(detail_url(task_id))
    assert detail.status_code == 200 and 'id="fq-requeue"' not in detail.content.decode()
    for name in (REQUEUE, DELETE):
        for data in ({SELECTED: task_id}, {SELECTED: task_id, "confirm": "yes"}, {"all": "1", "confirm": "yes"}):
            assert viewer.post(reverse(name), data).status_code == 403
    assert viewer.post(reverse(DLQ), {"action": "delete_selected", SELECTED: task_id}).status_code == 403
    assert is_dead(queue, task_id)


def test_the_changelist_urls_lead_to_the_pages(viewer: Client) -> None:
    assert reverse("admin:fairque_django_fairqueue_changelist") == reverse(DASHBOARD)
    assert reverse("admin:fairque_django_deadletterqueue_changelist") == reverse(DLQ)
    app = viewer.get(reverse("admin:app_list", kwargs={"app_label": "fairque_django"}))
    assert app.status_code == 200
    assert "Dashboard" in app.content.decode() and "Dead-letter queue" in app.content.decode()


# --- CSRF and safe methods --------------------------------------------------------------------
def test_every_post_view_rejects_a_missing_csrf_token(queue: TaskQueue) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with("view_fairqueue", "manage_fairqueue"))
    task_id = make_dead(queue)
    posts = [
        (reverse(REQUEUE), {SELECTED: task_id, "confirm": "yes"}),
        (reverse(REQUEUE), {"all": "1", "confirm": "yes"}),
        (reverse(REQUEUE), {SELECTED: task_id}),
        (reverse(DELETE), {SELECTED: task_id, "confirm": "yes"}),
        (reverse(DELETE), {"all": "1", "confirm": "yes"}),
        (reverse(DELETE), {SELECTED: task_id}),
        (reverse(DLQ), {"action": "requeue_selected", SELECTED: task_id}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    assert is_dead(queue, task_id)
    # with the token from the page's form the same POST works
    page = client.get(reverse(DLQ)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    response = client.post(reverse(REQUEUE), {SELECTED: task_id, "confirm": "yes",
                                              "csrfmiddlewaretoken": token.group(1)})
    assert response.status_code == 302
    assert not is_dead(queue, task_id)


def test_get_of_an_action_url_changes_nothing(manager: Client, queue: TaskQueue) -> None:
    task_id = make_dead(queue)
    for name in (REQUEUE, DELETE):
        for query in (f"?{SELECTED}={task_id}&confirm=yes", "?all=1&confirm=yes"):
            assert manager.get(reverse(name) + query).status_code == 405
    assert is_dead(queue, task_id) and queue.dlq_size() == 1
    # nor do the pages themselves
    manager.get(reverse(DLQ) + f"?{SELECTED}={task_id}&action=delete_selected&confirm=yes")
    manager.get(detail_url(task_id) + "?confirm=yes")
    assert is_dead(queue, task_id)


# --- confirm, then act ----------------------------------------------------------------------
def test_requeue_one_from_the_detail_page(manager: Client, queue: TaskQueue) -> None:
    task_id = make_dead(queue)
    confirm = manager.post(reverse(REQUEUE), {SELECTED: task_id, "next": reverse(DLQ)})
    assert confirm.status_code == 200
    body = confirm.content.decode()
    assert "Are you sure" in body and task_id in body and 'name="confirm" value="yes"' in body
    assert is_dead(queue, task_id)  # the first POST only asks
    done = manager.post(reverse(REQUEUE), {SELECTED: task_id, "next": reverse(DLQ), "confirm": "yes"},
                        follow=True)
    assert done.redirect_chain[-1][0] == reverse(DLQ)
    assert messages_of(done) == ["Requeued 1 dead task."]
    state = queue.get_task_state(task_id)
    assert state is not None and state["st"] == "queued" and state["r"] == "0"


def test_delete_selected_through_the_list_action(manager: Client, queue: TaskQueue) -> None:
    ids = [make_dead(queue) for _ in range(3)]
    keep = make_dead(queue, "user:2")
    confirm = manager.post(reverse(DLQ), {"action": "delete_selected", SELECTED: ids})
    assert confirm.status_code == 200
    body = confirm.content.decode()
    assert "Are you sure you want to delete the selected dead tasks" in body
    assert all(i in body for i in ids) and keep not in body
    assert queue.dlq_size() == 4
    done = manager.post(reverse(DELETE), {SELECTED: ids, "confirm": "yes", "next": reverse(DLQ)}, follow=True)
    assert messages_of(done) == ["Deleted 3 dead tasks."]
    assert [e.task_id for e in queue.get_dlq()] == [keep]
    assert all(queue.get_task_state(i) is None for i in ids)


def test_one_deleted_task_message_is_singular(manager: Client, queue: TaskQueue) -> None:
    task_id = make_dead(queue)
    done = manager.post(reverse(DELETE), {SELECTED: task_id, "confirm": "yes"}, follow=True)
    assert messages_of(done) == ["Deleted 1 dead task."]


def test_tasks_no_longer_dead_are_reported(manager: Client, queue: TaskQueue) -> None:
    ids = [make_dead(queue) for _ in range(4)]
    confirm = manager.post(reverse(DLQ), {"action": "requeue_selected", SELECTED: ids}).content.decode()
    assert all(i in confirm for i in ids)
    queue.requeue_dead([ids[0]])  # someone else acted meanwhile
    queue.delete_dead([ids[1]])
    done = manager.post(reverse(REQUEUE), {SELECTED: ids, "confirm": "yes"}, follow=True)
    assert messages_of(done) == ["Requeued 2 dead tasks.", "2 tasks were no longer in the dead-letter queue."]
    assert queue.dlq_size() == 0


def test_confirmation_lists_ids_already_gone(manager: Client, queue: TaskQueue) -> None:
    ids = [make_dead(queue) for _ in range(2)]
    queue.delete_dead([ids[0]])
    body = manager.post(reverse(REQUEUE), {SELECTED: ids}).content.decode()
    assert "No longer in the dead-letter queue" in body and ids[0] in body and ids[1] in body
    only_gone = manager.post(reverse(REQUEUE), {SELECTED: [ids[0]]}, follow=True)
    assert messages_of(only_gone) == ["1 task was no longer in the dead-letter queue. No items have been changed."]
    assert is_dead(queue, ids[1])


def test_requeue_all_and_purge_all(manager: Client, queue: TaskQueue) -> None:
    ids = [make_dead(queue, f"user:{i % 3 + 1}") for i in range(5)]
    body = manager.post(reverse(REQUEUE), {"all": "1"}).content.decode()
    assert "requeue <strong>all 5</strong> dead tasks" in body
    assert queue.dlq_size() == 5
    done = manager.post(reverse(REQUEUE), {"all": "1", "confirm": "yes"}, follow=True)
    assert messages_of(done) == ["Requeued 5 dead tasks."]
    assert queue.dlq_size() == 0 and all(queue.get_task_state(i)["st"] == "queued" for i in ids)  # type: ignore[index]

    while (t := queue.pop("worker-001")) is not None:  # run the requeued ones
        queue.complete(t)
    more = [make_dead(queue, "user:4") for _ in range(2)]
    assert queue.dlq_size() == 2
    body = manager.post(reverse(DELETE), {"all": "1"}).content.decode()
    assert "delete <strong>all 2</strong> dead tasks" in body and all(i in body for i in more)
    done = manager.post(reverse(DELETE), {"all": "1", "confirm": "yes"}, follow=True)
    assert messages_of(done) == ["Purged the dead-letter queue: deleted 2 dead tasks."]
    assert queue.dlq_size() == 0


def test_all_on_an_empty_dlq(manager: Client) -> None:
    body = manager.post(reverse(DELETE), {"all": "1"}).content.decode()
    assert "The dead-letter queue is empty" in body
    done = manager.post(reverse(REQUEUE), {"all": "1", "confirm": "yes"}, follow=True)
    assert messages_of(done) == ["The dead-letter queue is empty: nothing was requeued."]


def test_action_without_selection_or_action(manager: Client, queue: TaskQueue) -> None:
    task_id = make_dead(queue)
    none_selected = manager.post(reverse(DLQ), {"action": "delete_selected"}, follow=True)
    assert messages_of(none_selected) == [
        "Items must be selected in order to perform actions on them. No items have been changed."]
    no_action = manager.post(reverse(DLQ), {"action": "", SELECTED: task_id}, follow=True)
    assert messages_of(no_action) == ["No action selected."]
    nothing = manager.post(reverse(REQUEUE), {"confirm": "yes"}, follow=True)
    assert "Items must be selected" in messages_of(nothing)[0]
    assert is_dead(queue, task_id)


def test_next_must_stay_on_this_site(manager: Client, queue: TaskQueue) -> None:
    task_id = make_dead(queue)
    response = manager.post(reverse(DELETE), {SELECTED: task_id, "confirm": "yes",
                                              "next": "https://evil.example/x"})
    assert response.status_code == 302 and response["Location"] == reverse(DLQ)
    other = make_dead(queue)
    back = reverse(DLQ) + "?user=user%3A1"
    response = manager.post(reverse(DELETE), {SELECTED: other, "confirm": "yes", "next": back})
    assert response["Location"] == back


# --- list: pagination, filters, search ----------------------------------------------------------
def test_pagination(manager: Client, queue: TaskQueue) -> None:
    ids = [make_dead(queue, f"user:{i % 2 + 1}") for i in range(120)]
    base = int(time.time() * 1000) - 1_000_000
    queue.client.zadd(queue.keys.dlq, {task_id: base + i for i, task_id in enumerate(ids)})  # distinct times
    page1 = manager.get(reverse(DLQ))
    assert len(page1.context["rows"]) == 50
    assert [r["task_id"] for r in page1.context["rows"]] == ids[::-1][:50]  # newest first
    body = page1.content.decode()
    assert "120 dead tasks" in body and '<span class="this-page">1</span>' in body and "?p=3" in body
    page3 = manager.get(reverse(DLQ) + "?p=3")
    assert [r["task_id"] for r in page3.context["rows"]] == ids[::-1][100:]
    assert "(showing 101\u2013120)" in page3.content.decode()
    beyond = manager.get(reverse(DLQ) + "?p=9")
    assert beyond.status_code == 302 and beyond["Location"].endswith("?p=3")
    assert manager.get(reverse(DLQ) + "?p=abc").status_code == 200


def test_filters_and_search(manager: Client, queue: TaskQueue) -> None:
    a1 = make_dead(queue, "user:1", ValueError("v"))
    b1 = make_dead(queue, "user:2", KeyError("k"))
    a2 = make_dead(queue, "user:1", KeyError("k2"))

    def listed(query: str) -> set[str]:
        response = manager.get(reverse(DLQ) + query)
        assert response.status_code == 200
        return {r["task_id"] for r in response.context["rows"]}

    assert listed("") == {a1, b1, a2}
    assert listed("?user=user:1") == {a1, a2}
    assert listed("?error_type=KeyError") == {b1, a2}
    assert listed("?user=user:1&error_type=KeyError") == {a2}
    assert listed(f"?q={b1}") == {b1}
    assert a1 in listed(f"?q={a1[:8]}")
    assert listed("?q=not-an-id") == set()
    body = manager.get(reverse(DLQ) + "?user=user:1").content.decode()
    assert 'id="changelist-filter"' in body and "By user" in body and "By error type" in body
    assert '<li class="selected"><a href="/admin/fairque_django/deadletterqueue/?user=user%3A1">user:1 (2)' in body
    assert "Clear all filters" in body
    assert "No dead task matches." in manager.get(reverse(DLQ) + "?user=user:5").content.decode()


# --- detail ---------------------------------------------------------------------------------
def test_detail_shows_everything_about_the_dead_task(viewer: Client, queue: TaskQueue) -> None:
    task_id = make_dead(queue, "user:3", RuntimeError("it broke"), args=["tag-1", {"n": 2}])
    body = viewer.get(detail_url(task_id)).content.decode()
    for text in (task_id, "user:3", "tests.testapp.tasks.record", "it broke", "RuntimeError",
                 "Traceback (most recent call last):", "&quot;tag-1&quot;", "&quot;sleep&quot;: 0",
                 "Dead at", "Created", "Failure type"):
        assert text in body, text
    assert '<pre class="fq-pre">[\n  &quot;tag-1&quot;,' in body  # pretty JSON
    assert "Attempts: 1 Retries: 0 of 2 (max_retries) Failures: 1" in page_text(body)


def page_text(body: str) -> str:
    """The page's visible text, tags dropped and whitespace collapsed (markup may change)."""
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def fail_until_dead(queue: TaskQueue, max_retries: int) -> str:
    """Fail every attempt of a task (retried at once: no back-off) until it is dead-lettered."""
    task = Task.create(user_id="user:1", func_name="tests.testapp.tasks.record", args=["x"],
                       max_retries=max_retries)
    queue.push(task)
    fairque = settings.FAIRQUE
    with override_settings(FAIRQUE={**fairque, "queue": {**fairque.get("queue", {}),
                                                         "retry_backoff_base_seconds": 0}}):
        local, outcome = get_queue(), "retry"
        while outcome == "retry":
            popped = local.pop("worker-001")
            assert popped is not None and popped.task_id == task.task_id
            outcome = local.fail(popped, ValueError("boom"))
    return task.task_id


@pytest.mark.parametrize(("max_retries", "counts"), [
    (0, "Attempts: 1 · Retries: 0 of 0 (max_retries) · Failures: 1"),  # ran once, never retried
    (2, "Attempts: 3 · Retries: 2 of 2 (max_retries) · Failures: 3"),
])
def test_detail_and_list_count_attempts_retries_and_failures(viewer: Client, queue: TaskQueue,
                                                             max_retries: int, counts: str) -> None:
    task_id = fail_until_dead(queue, max_retries)
    text = page_text(viewer.get(detail_url(task_id)).content.decode())
    assert counts.replace(" · ", " ") in text and "(max " not in text  # one row per count
    assert f'title="{counts}"' in viewer.get(reverse(DLQ)).content.decode()  # the list's Attempts cell


def test_detail_of_a_task_that_is_not_dead(viewer: Client, queue: TaskQueue) -> None:
    task_id = make_dead(queue)
    queue.requeue_dead([task_id])
    response = viewer.get(detail_url(task_id), follow=True)
    assert response.redirect_chain[-1][0] == reverse(DLQ)
    assert messages_of(response) == [f"Dead task with ID “{task_id}” doesn't exist (it is now queued). "
                                     "Perhaps it was requeued or deleted?"]
    response = viewer.get(detail_url("no-such-task"), follow=True)
    assert "doesn't exist." in messages_of(response)[0]


def test_task_ids_with_odd_characters(manager: Client, queue: TaskQueue) -> None:
    task = Task.create(user_id="user:1", payload={"k": 1}, task_id="job/42-ü?&x")
    queue.push(task)
    popped = queue.pop("worker-001")
    assert popped is not None
    queue.fail(popped, "bad", retry=False)
    assert manager.get(detail_url("job/42-ü?&x")).status_code == 200
    done = manager.post(reverse(DELETE), {SELECTED: "job/42-ü?&x", "confirm": "yes"}, follow=True)
    assert messages_of(done) == ["Deleted 1 dead task."]


# --- dashboard ------------------------------------------------------------------------------
def test_dashboard_shows_totals_users_workers_and_dlq(viewer: Client, queue: TaskQueue) -> None:
    make_dead(queue, "user:1")
    queue.push(Task.create(user_id="user:2", payload={"i": 1}, priority=Priority.CRITICAL))
    queue.push(Task.create(user_id="user:2", payload={"i": 2}))
    queue.push(Task.create(user_id="user:4", payload={"i": 3}, delay_seconds=600))
    worker = Worker(conf.get_config(), worker_id="worker-001", install_signal_handlers=False)
    worker.publish_health([])
    response = viewer.get(reverse(DASHBOARD))
    assert response.status_code == 200
    body = response.content.decode()
    rows = {r["row"].tenant: r["row"] for r in response.context["user_rows"]}
    assert (rows["user:2"].critical, rows["user:2"].normal) == (1, 1)
    assert rows["user:4"].delayed == 1
    workers = {w["row"].worker_id: w["row"] for w in response.context["workers"]}
    assert workers["worker-001"].status == "alive" and workers["worker-002"].status == "never seen"
    assert 'id="fq-dlq-size">1<' in body and reverse(DLQ) in body
    for text in ("Counters", "Right now", "Users with unfinished work", "Workers", "alive", "never seen",
                 "user:1, user:2, user:3", "No rates yet"):
        assert text in body, text
    assert response.context["stats"]["tasks_pushed"] == 4


def test_dashboard_shows_the_progress_of_running_tasks(viewer: Client, queue: TaskQueue) -> None:
    queue.push(Task.create(user_id="user:1", func_name="tests.testapp.tasks.record", args=["x"]))
    popped = queue.pop("worker-001")
    assert popped is not None and queue.set_progress(popped, 0.42, "42 of 100 <rows>")
    Worker(conf.get_config(), worker_id="worker-001", install_signal_handlers=False).publish_health([popped])
    body = viewer.get(reverse(DASHBOARD)).content.decode()
    assert '<progress max="100" value="42">' in body
    assert "42% · 42 of 100 &lt;rows&gt;" in body and "<rows>" not in body  # escaped


def test_pages_say_when_redis_is_unreachable(viewer: Client) -> None:
    broken = {"redis": {"url": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.5},
              "workers": [{"id": "worker-001", "assigned_users": ["*"]}]}
    with override_settings(FAIRQUE=broken):
        response = viewer.get(reverse(DASHBOARD))
        assert response.status_code == 503
        assert "The queue could not be read" in response.content.decode()
