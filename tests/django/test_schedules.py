"""Schedules in Django: FAIRQUE["SCHEDULES"] checked with clear errors, cron in settings.TIME_ZONE,
``manage.py fairque_schedules``, the admin's schedule page (list, run now / pause / resume: POST,
CSRF, confirmation, ``manage_fairqueue``) and ``runfairworker`` firing them (``--no-schedules``)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.urls import reverse

from fairque_django import conf
from fairque_django.conf import get_queue
from fairque_django.core.models import Task
from fairque_django.schedules import get_schedules, statuses
from tests.testapp.tasks import LOG

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_client")]

SCHEDULES = {
    "nightly-report": {"task": "tests.testapp.tasks.record", "cron": "30 2 * * *", "args": ["nightly"],
                       "tenants": ["user:1", "user:2"]},
    "heartbeat": {"task": "tests.testapp.tasks.record", "every": 1, "args": ["beat"], "user": "user:4",
                  "catch_up": False},
}
LIST = "admin:fairque_schedules"
ACTION = "admin:fairque_schedule_action"


@pytest.fixture(autouse=True)
def with_schedules() -> Iterator[None]:
    with override_settings(FAIRQUE={**settings.FAIRQUE, "SCHEDULES": SCHEDULES}, TIME_ZONE="Europe/Berlin"):
        yield


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("fairque_schedules", *args, stdout=out)
    return out.getvalue()


def stored_ids(prefix: str = "sched:") -> list[str]:
    queue = get_queue()
    return sorted(k.decode().split(":t:", 1)[1] for k in queue.client.keys(f"{queue.keys.base}:t:{prefix}*"))


def test_settings_schedules_are_built_in_the_project_time_zone() -> None:
    found = {s.name: s for s in get_schedules()}
    assert found["nightly-report"].timezone == "Europe/Berlin"
    assert found["nightly-report"].tenants == ("user:1", "user:2")
    assert found["heartbeat"].every == 1 and not found["heartbeat"].catch_up


@pytest.mark.parametrize(("entry", "message"), [
    ({"task": "t", "every": 0, "user": "a"}, 'FAIRQUE[\'SCHEDULES\']["bad"].every: must be >= 1'),
    ({"task": "t", "cron": "* * *", "user": "a"}, 'FAIRQUE[\'SCHEDULES\']["bad"].cron: bad cron expression'),
    ({"task": "t", "every": 5, "tenants": "org:*"}, "write a list for ids or patterns"),
])
def test_a_bad_schedule_is_a_clear_configuration_error(entry: dict[str, Any], message: str) -> None:
    with override_settings(FAIRQUE={**settings.FAIRQUE, "SCHEDULES": {"bad": entry}}):
        conf.reset()
        with pytest.raises(conf.FairQueueImproperlyConfigured) as info:
            get_schedules()
        assert message in str(info.value), str(info.value)


def test_command_lists_runs_pauses_and_resumes() -> None:
    listing = run("list")
    assert "nightly-report" in listing and "cron 30 2 * * * (Europe/Berlin)" in listing and "every 1 s" in listing
    assert "never" not in listing  # a tick never fired reads "-"
    assert run("run", "nightly-report") == "schedule nightly-report: pushed 2 task(s)\n"
    ids = stored_ids()
    assert len(ids) == 2 and {i.rsplit(":", 1)[1] for i in ids} == {"1", "2"}
    run("pause", "heartbeat")
    data = {d["name"]: d for d in json.loads(run("list", "--json"))}
    assert data["heartbeat"]["paused"] and not data["nightly-report"]["paused"]
    assert data["nightly-report"]["tenants"] == ["user:1", "user:2"]
    run("resume", "heartbeat")
    assert not {d["name"]: d for d in json.loads(run("list", "--json"))}["heartbeat"]["paused"]
    with pytest.raises(CommandError, match="no schedule 'nope' \\(schedules: nightly-report, heartbeat\\)"):
        run("run", "nope")


def user_with(*codenames: str) -> User:
    user: User = User.objects.create_user("u", password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="fairque_django"))
    return user


def test_the_schedule_page_lists_schedules_with_last_and_next_tick(client: Client) -> None:
    client.force_login(user_with("view_fairqueue"))
    dashboard = client.get(reverse("admin:fairque_dashboard"))
    assert reverse(LIST) in dashboard.content.decode()
    page = client.get(reverse(LIST))
    html = page.content.decode()
    assert page.status_code == 200
    assert "nightly-report" in html and "cron 30 2 * * * (Europe/Berlin)" in html and "user:1, user:2" in html
    assert "never" in html and "02:30:00" in html  # the next tick of the nightly report, in its zone
    assert "Run now" not in html  # view only: no buttons


def test_run_now_needs_confirmation_csrf_and_the_manage_permission(client: Client) -> None:
    viewer = user_with("view_fairqueue")
    client.force_login(viewer)
    denied = client.post(reverse(ACTION), {"name": "nightly-report", "action": "run", "confirm": "yes"})
    assert denied.status_code == 403
    assert stored_ids() == []
    viewer.user_permissions.add(Permission.objects.get(codename="manage_fairqueue"))
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(User.objects.get(pk=viewer.pk))
    assert checked.post(reverse(ACTION), {"name": "nightly-report", "action": "run"}).status_code == 403  # no CSRF
    client.force_login(User.objects.get(pk=viewer.pk))
    assert client.get(reverse(ACTION)).status_code == 405
    confirm = client.post(reverse(ACTION), {"name": "nightly-report", "action": "run"})
    assert confirm.status_code == 200 and "Are you sure you want to run schedule" in confirm.content.decode()
    assert stored_ids() == []  # nothing happens before the confirmation
    done = client.post(reverse(ACTION), {"name": "nightly-report", "action": "run", "confirm": "yes"}, follow=True)
    assert "pushed 2 tasks now" in done.content.decode()
    assert len(stored_ids()) == 2
    client.post(reverse(ACTION), {"name": "heartbeat", "action": "pause", "confirm": "yes"})
    assert {s.schedule.name: s.paused for s in statuses()}["heartbeat"]
    page = client.get(reverse(LIST)).content.decode()
    assert 'id="fq-resume-heartbeat"' in page and "(paused)" in page
    client.post(reverse(ACTION), {"name": "heartbeat", "action": "resume", "confirm": "yes"})
    assert not {s.schedule.name: s.paused for s in statuses()}["heartbeat"]
    unknown = client.post(reverse(ACTION), {"name": "nope", "action": "run", "confirm": "yes"}, follow=True)
    html = unknown.content.decode()
    assert "No schedule &#x27;nope&#x27;" in html.split('class="messagelist"', 1)[1].split("</ul>", 1)[0], html


def worker_thread(*args: str) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            call_command("runfairworker", "worker-002", *args, stdout=io.StringIO(), stderr=io.StringIO())
        except SystemExit:
            pass
        except BaseException as exc:
            errors.append(exc)

    return threading.Thread(target=target, daemon=True), errors


@pytest.mark.django_db(transaction=True)
def test_runfairworker_fires_schedules_unless_told_not_to() -> None:
    queue = get_queue()
    thread, errors = worker_thread("--max-tasks", "1", "--no-schedules")
    thread.start()
    time.sleep(3)
    assert queue.get_stats()["tasks_pushed"] == 0 and thread.is_alive()  # --no-schedules: nothing fired
    queue.push(Task.create(user_id="user:4", func_name="tests.testapp.tasks.record", args=["end"]))
    thread.join(60)
    assert not thread.is_alive() and not errors, errors
    queue.client.delete(LOG)
    thread, errors = worker_thread("--max-tasks", "3")
    thread.start()  # fires "heartbeat" every second; runs 3 of its ticks' tasks and exits
    thread.join(60)
    assert not thread.is_alive() and not errors, errors
    assert [x.decode() for x in queue.client.lrange(LOG, 0, -1)] == ["user:4|beat"] * 3
    assert int(queue.schedule_states(["heartbeat"])["heartbeat"]["fired"]) >= 3
