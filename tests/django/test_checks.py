"""System checks: each id fires in its situation and stays quiet with good settings."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import CheckMessage, Error, Warning, run_checks
from django.test import override_settings

from fairque_django.checks import (
    check_cache_alias,
    check_config,
    check_import_paths,
    check_orphan_after,
    check_pattern_schedules,
    check_redis_ping,
    check_task_queues,
    check_unservable_users,
)
from fairque_django.core.handler import TaskHandler
from tests.support.processes import ROOT
from tests.support.redis_url import REDIS_URL

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
GOOD = {"redis": {"url": REDIS_URL}, "workers": [{"id": "w1", "assigned_users": ["user:*"]}]}


class GoodHandler(TaskHandler):
    pass


def not_a_class(obj: Any) -> str:
    return "x"




def fairque_messages(deploy: bool = True) -> list[CheckMessage]:
    messages = run_checks(include_deployment_checks=deploy)
    return [m for m in messages if (m.id or "").startswith("fairque_django.")]


def ids(messages: list[CheckMessage]) -> list[str]:
    """The messages' ids; every fairque message's hint must name the settings reference."""
    for m in messages:
        if (m.id or "").startswith("fairque_django."):
            assert "docs/settings.md" in (m.hint or ""), (m.id, m.hint)
    return [m.id or "" for m in messages]


def with_fairque(**extra: Any) -> dict[str, Any]:
    return {**GOOD, **extra}


# --------------------------------------------------------------------------- good settings


def test_good_settings_are_silent() -> None:
    assert fairque_messages() == []


def test_checks_are_registered_under_the_fairque_tag() -> None:
    with override_settings(FAIRQUE={"BOGUS": 1}):
        assert "fairque_django.E001" in ids(run_checks(tags=["fairque"]))


def test_good_cache_alias_and_paths_are_silent() -> None:
    caches = {"default": LOCMEM, "fq": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
    fairque = with_fairque(CACHE_ALIAS="fq", HANDLER="tests.django.test_checks.GoodHandler",
                           TENANT_RESOLVER="tests.django.test_checks.not_a_class")
    with override_settings(CACHES=caches, FAIRQUE=fairque):
        assert fairque_messages() == []


# --------------------------------------------------------------------------- W001 / E001-E003


def test_w001_missing_fairque() -> None:
    with override_settings(FAIRQUE=None):
        messages = check_config()
        assert ids(messages) == ["fairque_django.W001"]
        assert isinstance(messages[0], Warning) and messages[0].hint
        assert "fairque_django.W001" in ids(fairque_messages(deploy=False))


@pytest.mark.parametrize(
    ("fairque", "key"),
    [
        ({"workers": [{"id": "w1", "poll_interval_seconds": -1}]}, "workers[0].poll_interval_seconds"),
        ({"BOGUS": True}, "FAIRQUE['BOGUS']"),
        ({"ENQUEUE_ON_COMMIT": 1}, "FAIRQUE['ENQUEUE_ON_COMMIT']"),
        ({"queue": {"fairness": "lottery"}}, "queue.fairness"),
        ({"CONFIG_FILE": "/nonexistent/fq.yaml"}, "/nonexistent/fq.yaml"),
        ({"workers": [{"id": "w1"}], "WORKER_ID": "w2"}, "FAIRQUE['WORKER_ID']"),
    ],
)
def test_e001_malformed(fairque: dict[str, Any], key: str) -> None:
    with override_settings(FAIRQUE=fairque):
        messages = check_config()
        assert ids(messages) == ["fairque_django.E001"]
        assert key in messages[0].msg
        assert isinstance(messages[0], Error) and messages[0].hint


def test_e001_not_a_dict() -> None:
    with override_settings(FAIRQUE="redis://localhost"):
        assert ids(check_config()) == ["fairque_django.E001"]
        # the other checks do not crash on it
        assert check_cache_alias() == check_import_paths() == check_unservable_users() == []


def test_e002_duplicate_worker_ids_each_reported() -> None:
    fairque = {"workers": [{"id": "w1"}, {"id": "w2"}, {"id": "w1"}, {"id": "w2"}]}
    with override_settings(FAIRQUE=fairque):
        messages = check_config()
    assert ids(messages) == ["fairque_django.E002", "fairque_django.E002"]
    assert "'w1'" in messages[0].msg and "workers[0], workers[2]" in messages[0].msg
    assert "'w2'" in messages[1].msg
    assert all(m.hint for m in messages)


def test_e003_user_assigned_to_two_workers() -> None:
    fairque = {"workers": [{"id": "a", "assigned_users": ["user:1", "user:2"]},
                           {"id": "b", "assigned_users": ["user:2", "tenant:*"]},
                           {"id": "c", "assigned_users": ["tenant:*"]}]}
    with override_settings(FAIRQUE=fairque):
        messages = check_config()
    assert ids(messages) == ["fairque_django.E003"]  # patterns may overlap: first match wins
    assert "'user:2'" in messages[0].msg and "'a'" in messages[0].msg and "'b'" in messages[0].msg


def test_duplicates_plus_another_error_report_both() -> None:
    fairque = {"workers": [{"id": "w1", "poll_interval_seconds": 0}, {"id": "w1"}]}
    with override_settings(FAIRQUE=fairque):
        assert ids(check_config()) == ["fairque_django.E001", "fairque_django.E002"]


def test_duplicates_in_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "fq.yaml"
    path.write_text("workers:\n  - id: a\n    assigned_users: [u1]\n  - id: b\n    assigned_users: [u1]\n")
    with override_settings(FAIRQUE={"CONFIG_FILE": str(path)}):
        assert ids(check_config()) == ["fairque_django.E003"]


def test_yaml_file_with_a_bad_key_and_duplicates_reports_both(tmp_path: Path) -> None:
    """The loader goes on after a bad worker and returns every problem: checks list them all."""
    path = tmp_path / "fq.yaml"
    path.write_text("workers:\n  - id: a\n    poll_interval_seconds: 0\n  - id: a\n"
                    "  - id: b\n    assigned_users: [u1]\n  - id: c\n    assigned_users: [u1]\n")
    with override_settings(FAIRQUE={"CONFIG_FILE": str(path)}):
        messages = check_config()
    assert ids(messages) == ["fairque_django.E001", "fairque_django.E002", "fairque_django.E003"]
    assert "workers[0].poll_interval_seconds: must be > 0" in messages[0].msg and str(path) in messages[0].msg
    assert "workers[0], workers[1]" in messages[1].msg
    assert "'b', 'c'" in messages[2].msg


# --------------------------------------------------------------------------- E004 / E005


def test_e004_cache_alias_not_in_caches() -> None:
    with override_settings(CACHES={"default": LOCMEM}, FAIRQUE=with_fairque(CACHE_ALIAS="redis")):
        messages = check_cache_alias()
        assert ids(messages) == ["fairque_django.E004"]
        assert "'redis'" in messages[0].msg and "CACHE_ALIAS" in messages[0].msg
        assert ids(fairque_messages(deploy=False)) == ["fairque_django.E004"]


def test_e005_cache_alias_not_redis() -> None:
    with override_settings(CACHES={"default": LOCMEM}, FAIRQUE=with_fairque(CACHE_ALIAS="default")):
        messages = check_cache_alias()
        assert ids(messages) == ["fairque_django.E005"]
        assert "not a Redis cache" in messages[0].msg


def test_builtin_redis_cache_alias_is_fine() -> None:
    caches = {"default": LOCMEM,
              "fq": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    with override_settings(CACHES=caches, FAIRQUE=with_fairque(CACHE_ALIAS="fq")):
        assert check_cache_alias() == []
        assert check_redis_ping() == []


# --------------------------------------------------------------------------- W002


def test_w002_users_no_worker_can_serve() -> None:
    fairque = {"redis": {"url": REDIS_URL},
               "workers": [{"id": "w1", "assigned_users": ["user:1"], "steal_targets": ["user:2"]},
                           {"id": "w2", "assigned_users": ["org:*"]}],
               "queue": {"user_weights": {"user:1": 2, "user:2": 1, "org:7": 3, "user:99": 5, "vip": 2}}}
    with override_settings(FAIRQUE=fairque):
        messages = check_unservable_users()
    assert ids(messages) == ["fairque_django.W002"]
    assert "'user:99'" in messages[0].msg and "'vip'" in messages[0].msg
    for served in ("'user:1'", "'user:2'", "'org:7'"):
        assert served not in messages[0].msg


def test_w002_quiet_when_a_steal_pattern_covers_everyone() -> None:
    fairque = {"workers": [{"id": "w1", "assigned_users": ["user:1"], "steal_targets": ["*"]}],
               "queue": {"user_weights": {"user:99": 5}}}
    with override_settings(FAIRQUE=fairque):
        assert check_unservable_users() == []


def test_w002_quiet_without_workers() -> None:
    with override_settings(FAIRQUE={"queue": {"user_weights": {"user:99": 5}}}):
        assert check_unservable_users() == []


# --------------------------------------------------------------------------- W003


def test_w003_orphan_after_shorter_than_two_heartbeats() -> None:
    workers = [{"id": "w1", "assigned_users": ["user:*"], "heartbeat_interval_seconds": 2},
               {"id": "w2", "assigned_users": ["org:*"], "heartbeat_interval_seconds": 0.5}]
    with override_settings(FAIRQUE=with_fairque(workers=workers, queue={"orphan_after_seconds": 3})):
        messages = check_orphan_after()
        assert "fairque_django.W003" in ids(fairque_messages(deploy=False))
    assert ids(messages) == ["fairque_django.W003"]
    assert "w1" in messages[0].msg and "w2" not in messages[0].msg
    for queue in ({"orphan_after_seconds": 4}, {"orphan_after_seconds": 3, "orphan_takeover": False}, {}):
        with override_settings(FAIRQUE=with_fairque(workers=workers, queue=queue)):
            assert check_orphan_after() == [], queue


# --------------------------------------------------------------------------- W004


def test_w004_a_pattern_schedule_rarer_than_the_retention_window() -> None:
    schedules = {"weekly": {"task": "tests.testapp.tasks.record", "cron": "0 3 * * 1", "args": ["w"],
                            "tenants": ["org:*"]},
                 "hourly": {"task": "tests.testapp.tasks.record", "cron": "0 * * * *", "args": ["h"],
                            "tenants": ["org:*"]},
                 "weekly-by-id": {"task": "tests.testapp.tasks.record", "cron": "0 3 * * 1", "args": ["i"],
                                  "tenants": ["org:1"]}}
    with override_settings(FAIRQUE=with_fairque(SCHEDULES=schedules)):
        messages = check_pattern_schedules()
        assert "fairque_django.W004" in ids(fairque_messages(deploy=False))
    assert ids(messages) == ["fairque_django.W004"]
    gap = re.search(r"schedule 'weekly' .* fires up to (\d+) s apart", messages[0].msg)
    assert gap is not None and abs(int(gap.group(1)) - 604800) <= 3600  # a week (one hour more or less: DST)
    with override_settings(FAIRQUE=with_fairque(SCHEDULES=schedules, queue={"tenant_retention_seconds": 0})):
        assert check_pattern_schedules() == []  # kept forever: every tenant ever seen matches
    with override_settings(FAIRQUE=with_fairque(SCHEDULES=schedules,
                                                queue={"tenant_retention_seconds": 8 * 86400})):
        assert check_pattern_schedules() == []


# --------------------------------------------------------------------------- E006 / E007


def test_e006_tenant_resolver_does_not_import() -> None:
    with override_settings(FAIRQUE=with_fairque(TENANT_RESOLVER="myproject.nowhere.resolve")):
        messages = check_import_paths()
    assert ids(messages) == ["fairque_django.E006"]
    assert "myproject.nowhere.resolve" in messages[0].msg and messages[0].hint


def test_e006_tenant_resolver_not_callable() -> None:
    with override_settings(FAIRQUE=with_fairque(TENANT_RESOLVER="tests.django.test_checks.GOOD")):
        assert ids(check_import_paths()) == ["fairque_django.E006"]


@pytest.mark.parametrize("path", ["myproject.nowhere.Handler", "tests.django.test_checks.not_a_class",
                                  "collections.OrderedDict"])
def test_e007_handler(path: str) -> None:
    with override_settings(FAIRQUE=with_fairque(HANDLER=path)):
        messages = check_import_paths()
    assert ids(messages) == ["fairque_django.E007"]
    assert path in messages[0].msg


# --------------------------------------------------------------------------- E008 (deploy)


def test_e008_redis_does_not_answer() -> None:
    fairque = {"redis": {"url": "redis://alice:s3cret@127.0.0.1:1/0", "socket_connect_timeout": 0.5},
               "workers": [{"id": "w1"}]}
    with override_settings(FAIRQUE=fairque):
        messages = check_redis_ping()
        assert ids(messages) == ["fairque_django.E008"]
        assert "redis://alice@127.0.0.1:1/0" in messages[0].msg
        assert "s3cret" not in messages[0].msg
        # only a deploy check
        assert "fairque_django.E008" not in ids(fairque_messages(deploy=False))
        assert "fairque_django.E008" in ids(fairque_messages(deploy=True))


def test_e008_quiet_when_redis_answers() -> None:
    assert check_redis_ping() == []


# --------------------------------------------------------------------------- E105 / E106 (TASKS)

QUEUES_WITH_REPORTS = {"default": {"BACKEND": "fairque_django.backends.FairQueueBackend",
                                   "QUEUES": ["default", "emails", "reports"]}}


@pytest.fixture
def forget_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave no test-only task module imported behind."""
    for name in ("tests.testapp.wrong_queue_tasks", "tests.testapp.broken_tasks"):
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.mark.usefixtures("forget_module")
def test_e105_task_on_a_queue_not_in_queues() -> None:
    """A task declared on a queue the backend lacks fails when its module is imported (first
    enqueue, worker start): ``manage.py check`` imports the task modules and reports it."""
    with override_settings(FAIRQUE=with_fairque(TASK_MODULES=["tests.testapp.wrong_queue_tasks"])):
        messages = check_task_queues()
        assert ids(messages) == ["fairque_django.E105"]
        assert "'tests.testapp.wrong_queue_tasks'" in messages[0].msg and "'reports'" in messages[0].msg
        assert "['default', 'emails']" in (messages[0].hint or "")
        assert "fairque_django.E105" in ids(fairque_messages(deploy=False))  # what `manage.py check` runs
        with override_settings(TASKS=QUEUES_WITH_REPORTS):
            assert check_task_queues() == []  # the module imports and its task's queue is known
        # the module is loaded now; its task still names a queue the backend does not have
        messages = check_task_queues()
        assert ids(messages) == ["fairque_django.E105"]
        assert "tests.testapp.wrong_queue_tasks.monthly_report uses queue 'reports'" in messages[0].msg


@pytest.mark.usefixtures("forget_module")
def test_e106_task_module_does_not_import() -> None:
    with override_settings(FAIRQUE=with_fairque(TASK_MODULES=["tests.testapp.broken_tasks"])):
        messages = check_task_queues()
    assert ids(messages) == ["fairque_django.E106"]
    assert "RuntimeError: this task module is broken on purpose" in messages[0].msg


def test_task_checks_need_a_fairque_backend() -> None:
    with override_settings(TASKS={}, FAIRQUE=with_fairque(TASK_MODULES=["tests.testapp.broken_tasks"])):
        assert check_task_queues() == []


# --------------------------------------------------------------------------- the docs' table


def test_every_check_id_is_in_the_docs_table() -> None:
    """The ids the code can emit are exactly the ids of docs/settings.md's "System checks" table."""
    root = ROOT
    package = root / "fairque_django"
    code = "".join(p.read_text() for p in [package / "checks.py", *sorted((package / "backends").glob("*.py"))])
    in_code = set(re.findall(r'_ID \+ "([EW]\d{3})"', code)) | set(re.findall(r'"fairque_django\.([EW]\d{3})"', code))
    docs = (root / "docs" / "settings.md").read_text()
    section = docs.split("## System checks", 1)[1].split("\n## ", 1)[0]
    in_docs = re.findall(r"^\| `fairque_django\.([EW]\d{3})` \|", section, flags=re.MULTILINE)
    assert len(in_docs) == len(set(in_docs)), "an id is listed twice"
    assert set(in_docs) == in_code
    assert {"E103", "E105", "E106", "W101"} <= in_code  # the regexes found the backend's ids too
