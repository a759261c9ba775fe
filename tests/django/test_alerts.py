"""Alert rules against a real Redis and real workers: every rule fires and resolves, and each
transition is reported (Django signal + log record) exactly once however many evaluators run."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from fairque_django import conf
from fairque_django.alerts import AlertEvaluator
from fairque_django.conf import FairQueueImproperlyConfigured, get_queue, get_setting
from fairque_django.core.config import FairQueueConfig
from fairque_django.core.config.schema import ALERT_RULE, ALERT_RULE_OPTIONS
from fairque_django.core.errors import ConfigurationError
from fairque_django.core.models import Task
from fairque_django.core.observe import collect_metrics
from fairque_django.core.observe.alert_rules import (
    RULE_TYPES,
    AlertRule,
    AlertState,
    DlqSizeAbove,
    FailureRatioAbove,
    NoLiveWorker,
    OldestWaitAbove,
    evaluate,
    parse_rules,
)
from fairque_django.core.observe.alerts import AlertTracker
from fairque_django.core.queue import TaskQueue
from fairque_django.signals import fairque_alert
from tests.support import FAST, eventually, running_worker
from tests.support.processes import manage
from tests.testapp import tasks as t

WORKERS = [
    {"id": "w1", "assigned_users": ["a", "b", "c"], "steal_targets": ["d"], **FAST},
    {"id": "w2", "assigned_users": ["d"], "steal_targets": ["a", "b", "c"], **FAST},
]


@dataclass
class Captured:
    signals: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)

    def of(self, rule: str) -> list[str]:
        return [state for name, state, _ in self.signals if name == rule]

    def logged(self, rule: str) -> list[tuple[int, str]]:
        return [(r.levelno, r.alert_state) for r in self.records  # type: ignore[attr-defined]
                if getattr(r, "alert_rule", None) == rule]


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Captured]:
    got = Captured()
    lock = threading.Lock()

    def receiver(sender: Any, rule: Any, state: str, details: dict[str, Any], **kw: Any) -> None:
        with lock:
            got.signals.append((rule.name, state, details))

    fairque_alert.connect(receiver, weak=False, dispatch_uid="test_alerts")
    logger = logging.getLogger("fairque_django.alerts")
    handler = _ListHandler(got.records)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield got
    logger.removeHandler(handler)
    logger.setLevel(old_level)
    fairque_alert.disconnect(dispatch_uid="test_alerts")


@pytest.fixture
def config(make_config: Any) -> FairQueueConfig:
    return make_config(workers=WORKERS, lease_timeout_seconds=30, retry_backoff_base_seconds=0.05)


@pytest.fixture
def q(config: FairQueueConfig) -> TaskQueue:
    return TaskQueue(config)


def evaluator(q: TaskQueue, rules: list[dict[str, Any]], **kw: Any) -> AlertEvaluator:
    kw.setdefault("guard", False)
    return AlertEvaluator(q, parse_rules(rules), interval=kw.pop("interval", 0.1), top_n=20,
                          sample_interval=kw.pop("sample_interval", 0.2), **kw)


def state_of(ev: AlertEvaluator, name: str) -> AlertState:
    states = ev.run()
    assert states is not None
    return next(s for s in states if s.name == name)


def until_state(ev: AlertEvaluator, name: str, firing: bool, timeout: float = 15.0) -> AlertState:
    result: AlertState = eventually(lambda: (s := state_of(ev, name)).firing == firing and s, timeout=timeout,
                                    what=f"{name} {'firing' if firing else 'ok'}")
    return result


def dead_task(user: str = "a") -> Task:
    return Task.create(user_id=user, func_name="tests.testapp.tasks.always_fails", args=["x"], max_retries=0)


# --- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(("alerts", "message"), [
    ({"name": "x"}, r"FAIRQUE\['ALERTS'\]: must be a list of alert rules"),
    (["dlq"], r"FAIRQUE\['ALERTS'\]\[0\]: each alert rule must be a dict"),
    ([{"type": "dlq_size_above", "threshold": 1}], r"FAIRQUE\['ALERTS'\]\[0\]\.name: must be a non-empty string"),
    ([{"name": "x", "type": "dlq_size"}], r"\[0\]\.type: unknown alert type 'dlq_size'; did you mean 'dlq_size_above'"),
    ([{"name": "x", "type": "dlq_size_above"}], r"\[0\]\.threshold: a dlq_size_above rule needs 'threshold'"),
    ([{"name": "x", "type": "dlq_size_above", "threshold": -1}], r"\[0\]\.threshold: must be >= 0"),
    ([{"name": "x", "type": "dlq_size_above", "threshold": 1.5}], r"\[0\]\.threshold: must be an integer"),
    ([{"name": "x", "type": "oldest_wait_above", "threshold": 0}], r"\[0\]\.threshold: must be > 0"),
    ([{"name": "x", "type": "failure_ratio_above", "threshold": 2}], r"\[0\]\.threshold: must be <= 1"),
    ([{"name": "x", "type": "failure_ratio_above", "threshold": 0.5, "window": 7200}],
     r"\[0\]\.window: must be <= 3600"),
    ([{"name": "x", "type": "heartbeat_older_than", "threshold": 5, "treshold": 1}],
     r"\[0\]\.treshold: unknown option 'treshold'.*did you mean 'threshold'"),
    ([{"name": "x", "type": "no_live_worker", "users": "tenant:1"}], r"\[0\]\.users: must be a list of non-empty"),
    ([{"name": "x", "type": "total_depth_above", "threshold": 1, "lanes": ["queued"]}], r"\[0\]\.lanes: lanes must"),
    ([{"name": "x", "type": "dlq_size_above", "threshold": 1, "severity": "page"}], r"\[0\]\.severity: must be one"),
    ([{"name": "x", "type": "dlq_size_above", "threshold": 1}, {"name": "x", "type": "no_live_worker"}],
     r"\[1\]\.name: duplicate alert name 'x'"),
])
def test_bad_alert_settings_name_the_key(alerts: Any, message: str) -> None:
    with override_settings(FAIRQUE={**settings.FAIRQUE, "ALERTS": alerts}), \
            pytest.raises(FairQueueImproperlyConfigured, match=message):
        get_setting("ALERTS")
    with pytest.raises(ConfigurationError, match=message.replace(r"FAIRQUE\['ALERTS'\]", "ALERTS")):
        parse_rules(alerts, "ALERTS")


@pytest.mark.parametrize(("name", "value"), [("ALERT_INTERVAL", 0), ("ALERT_INTERVAL", "30"),
                                             ("METRICS_TOP_TENANTS", 0), ("METRICS_TOP_TENANTS", 2.5),
                                             ("METRICS_TOKEN", 5), ("METRICS_TOKEN", "")])
def test_bad_monitoring_options(name: str, value: Any) -> None:
    with override_settings(FAIRQUE={**settings.FAIRQUE, name: value}), \
            pytest.raises(FairQueueImproperlyConfigured, match=rf"FAIRQUE\['{name}'\]: must be"):
        get_setting(name)


def test_manage_py_check_reports_a_bad_rule() -> None:
    from fairque_django.checks import check_config

    bad = [{"name": "x", "type": "oldest_wait_above", "threshold": -5}]
    with override_settings(FAIRQUE={**settings.FAIRQUE, "ALERTS": bad}):
        [error] = check_config()
    assert error.id == "fairque_django.E001"
    assert "FAIRQUE['ALERTS'][0].threshold: must be > 0 (got -5)" in error.msg


@pytest.mark.parametrize("rule_type", sorted(RULE_TYPES))
def test_alert_schema_declares_every_rule_field_with_its_default(rule_type: str) -> None:
    """parse_rule checks a rule's fields against the schema: it must list the dataclass's fields."""
    cls = RULE_TYPES[rule_type]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    declared = [n for n in (*ALERT_RULE.names, *ALERT_RULE_OPTIONS[rule_type].names) if n != "type"]
    assert sorted(declared) == sorted(fields)
    for name in declared:
        spec = ALERT_RULE[name] if name in ALERT_RULE else ALERT_RULE_OPTIONS[rule_type][name]
        default = fields[name].default
        assert spec.required == (default is dataclasses.MISSING), name
        if not spec.required:
            assert spec.default == default, name
    assert set(ALERT_RULE_OPTIONS) == set(RULE_TYPES)
    assert issubclass(cls, AlertRule)


def test_good_alert_settings_become_rules() -> None:
    alerts = [
        {"name": "dlq", "type": "dlq_size_above", "threshold": 100, "severity": "critical"},
        {"name": "slow", "type": "oldest_wait_above", "threshold": 300, "tenants": ["tenant:*"]},
        {"name": "served", "type": "no_live_worker", "users": ["tenant:*"]},
        {"name": "errors", "type": "failure_ratio_above", "threshold": 0.2, "window": 600, "min_events": 50},
    ]
    with override_settings(FAIRQUE={**settings.FAIRQUE, "ALERTS": alerts, "ALERT_INTERVAL": 15}):
        rules = get_setting("ALERTS")
        assert get_setting("ALERT_INTERVAL") == 15.0
    assert rules[0] == DlqSizeAbove(name="dlq", threshold=100, severity="critical")
    assert rules[1] == OldestWaitAbove(name="slow", threshold=300.0, tenants=("tenant:*",))
    assert rules[2] == NoLiveWorker(name="served", users=("tenant:*",))
    assert rules[3] == FailureRatioAbove(name="errors", threshold=0.2, window=600.0, min_events=50)
    assert rules[3].to_dict()["window"] == 600.0


# --- each rule fires and resolves --------------------------------------------------------------
def test_dlq_size_above(config: FairQueueConfig, q: TaskQueue, captured: Captured) -> None:
    ev = evaluator(q, [{"name": "dlq", "type": "dlq_size_above", "threshold": 0}])
    assert not state_of(ev, "dlq").firing
    with running_worker(config, "w1"):
        q.push(dead_task())
        eventually(lambda: q.dlq_size() == 1, what="a dead task")
    state = until_state(ev, "dlq", True)
    assert state.value == 1 and "holds 1 task" in state.message
    q.delete_dead(None)
    until_state(ev, "dlq", False)
    assert captured.of("dlq") == ["firing", "resolved"]
    assert captured.logged("dlq") == [(logging.WARNING, "firing"), (logging.INFO, "resolved")]
    record = captured.records[0]
    assert record.name == "fairque_django.alerts" and "dlq FIRING" in record.getMessage()
    assert record.alert_details["value"] == 1 and record.alert_type == "dlq_size_above"  # type: ignore[attr-defined]


def test_total_depth_above(config: FairQueueConfig, q: TaskQueue, captured: Captured) -> None:
    ev = evaluator(q, [{"name": "depth", "type": "total_depth_above", "threshold": 3},
                       {"name": "all", "type": "total_depth_above", "threshold": 3,
                        "lanes": ["ready", "delayed", "leased"]}])
    for i in range(3):
        q.push(t.record(f"x{i}"), user_id="a")
    q.push(Task.create(user_id="b", func_name="tests.testapp.tasks.record", args=["later"],
                       delay_seconds=600))
    assert not state_of(ev, "depth").firing  # 3 ready: not above 3
    assert until_state(ev, "all", True).value == 4  # the delayed one counts there
    q.push(t.record("x3"), user_id="b")
    assert until_state(ev, "depth", True).value == 4
    with running_worker(config, "w1"):
        until_state(ev, "depth", False)
        until_state(ev, "all", False)  # only the delayed task is left
    assert captured.of("depth") == ["firing", "resolved"]
    assert captured.of("all") == ["firing", "resolved"]


def test_oldest_wait_above_names_the_tenants(config: FairQueueConfig, q: TaskQueue, captured: Captured) -> None:
    ev = evaluator(q, [{"name": "slow", "type": "oldest_wait_above", "threshold": 0.3},
                       {"name": "slow-x", "type": "oldest_wait_above", "threshold": 0.3, "tenants": ["x*"]}])
    q.push(t.record("b0"), user_id="b")
    q.push(t.record("c0"), user_id="c")
    assert not state_of(ev, "slow").firing
    state = until_state(ev, "slow", True)
    assert sorted(state.details["tenants"]) == ["b", "c"] and "b (" in state.message
    assert not state_of(ev, "slow-x").firing  # filtered to tenants x*
    with running_worker(config, "w1"):
        until_state(ev, "slow", False)
    assert captured.of("slow") == ["firing", "resolved"] and captured.of("slow-x") == []
    assert sorted(captured.signals[0][2]["tenants"]) == ["b", "c"]


def test_no_live_worker(config: FairQueueConfig, q: TaskQueue, captured: Captured) -> None:
    ev = evaluator(q, [{"name": "serve-a", "type": "no_live_worker", "users": ["a"]},
                       {"name": "serve-d", "type": "no_live_worker", "users": ["d"]},
                       {"name": "any", "type": "no_live_worker"},
                       {"name": "ghost", "type": "no_live_worker", "users": ["zzz"]}])
    first = {s.name: s for s in ev.run() or []}
    assert all(s.firing for s in first.values())
    assert "its workers are not alive: w1 never seen, w2 never seen" in first["serve-a"].message
    assert first["ghost"].details["uncovered"] == ["zzz"] and "no worker is assigned" in first["ghost"].message
    with running_worker(config, "w1"):
        until_state(ev, "serve-a", False)
        states = {s.name: s for s in ev.run() or []}
        assert not states["serve-d"].firing  # w1 may steal d
        assert not states["any"].firing and states["ghost"].firing
        assert states["serve-a"].details["targets"]["a"] == {"workers": ["w1", "w2"], "live": ["w1"]}
    until_state(ev, "serve-a", True)  # w1 stopped: nobody serves a any more
    assert captured.of("serve-a") == ["firing", "resolved", "firing"]
    assert captured.of("any") == ["firing", "resolved", "firing"]
    assert captured.of("ghost") == ["firing"]


def test_failure_ratio_above(config: FairQueueConfig, q: TaskQueue, captured: Captured) -> None:
    ev = evaluator(q, [{"name": "errors", "type": "failure_ratio_above", "threshold": 0.5, "window": 2,
                        "min_events": 3}], sample_interval=0.2)
    state = state_of(ev, "errors")
    assert not state.firing and state.value is None  # no snapshot to compare with yet
    with running_worker(config, "w1"):
        for _ in range(4):
            q.push(dead_task())
        eventually(lambda: q.dlq_size() == 4, what="4 dead tasks")
        state = until_state(ev, "errors", True)
        assert state.details["failed"] == 4 and state.value == 1.0
        for i in range(6):
            q.push(t.record(f"ok{i}"), user_id="b")
        # the failures leave the 2 s window; only successes (or nothing) remain
        state = until_state(ev, "errors", False, timeout=20)
    assert captured.of("errors") == ["firing", "resolved"]


def test_heartbeat_older_than_with_a_killed_runfairworker(redis_client: redis.Redis, captured: Captured) -> None:
    conf.install_providers()
    conf.reset()
    queue = get_queue()
    ev = evaluator(queue, [{"name": "beat", "type": "heartbeat_older_than", "threshold": 2.5}])
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(manage("runfairworker", "worker-001"))
        eventually(lambda: collect_metrics(queue).workers[0].alive, timeout=30, what="worker-001 alive")
        assert not state_of(ev, "beat").firing
        procs[0].send_signal(signal.SIGKILL)  # dies without a clean stop: its heartbeat stays on record
        procs[0].wait(10)
        state = until_state(ev, "beat", True, timeout=20)
        assert state.details["workers"] == ["worker-001"] and "worker-001" in state.message
        procs.append(manage("runfairworker", "worker-001"))  # restarted: heartbeats again
        until_state(ev, "beat", False, timeout=30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.communicate(timeout=30)
        conf.reset()
    assert captured.of("beat") == ["firing", "resolved"]


# --- exactly once ----------------------------------------------------------------------------
def evaluated_more(counts: list[int], n: int) -> None:
    """Wait until every evaluator (``counts``: how often each ran) has run ``n`` more times."""
    base = list(counts)
    eventually(lambda: all(now >= then + n for now, then in zip(counts, base, strict=True)), timeout=15,
               interval=0.01, what=f"every evaluator to run {n} more times")


def test_two_worker_hooks_report_each_transition_once(config: FairQueueConfig, captured: Captured) -> None:
    rules = [{"name": "dlq", "type": "dlq_size_above", "threshold": 0}]
    queues = [TaskQueue(config), TaskQueue(config)]
    hooks = [evaluator(queues[i], rules, interval=0.05, sample_interval=0.05) for i in range(2)]
    calls = [0, 0]

    def counting(i: int) -> Any:
        def hook() -> None:
            calls[i] += 1
            hooks[i]()
        return hook

    with running_worker(config, "w1", periodic=counting(0), periodic_interval=0.05), \
            running_worker(config, "w2", periodic=counting(1), periodic_interval=0.05):
        queues[0].push(dead_task("a"))
        eventually(lambda: captured.of("dlq") == ["firing"], what="firing")
        evaluated_more(calls, 5)  # both workers keep evaluating: still reported once
        queues[0].delete_dead(None)
        eventually(lambda: len(captured.of("dlq")) == 2, what="resolved")
        evaluated_more(calls, 5)
    assert calls[0] >= 5 and calls[1] >= 5  # both workers really evaluated, many times
    assert captured.of("dlq") == ["firing", "resolved"]
    assert captured.logged("dlq") == [(logging.WARNING, "firing"), (logging.INFO, "resolved")]


def test_concurrent_evaluators_see_each_transition_once(config: FairQueueConfig, captured: Captured) -> None:
    rules = [{"name": "dlq", "type": "dlq_size_above", "threshold": 0}]
    evaluators = [evaluator(TaskQueue(config), rules) for _ in range(4)]
    stop = threading.Event()
    runs = [0] * len(evaluators)

    def hammer(i: int) -> None:
        while not stop.is_set():
            evaluators[i].run()
            runs[i] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(evaluators))]
    for th in threads:
        th.start()
    q = TaskQueue(config)
    try:
        for _ in range(3):  # three full cycles
            q.push(dead_task("a"))
            task = q.pop("w1")
            assert task is not None and q.fail(task, "boom", retry=False) == "dead"
            evaluated_more(runs, 10)  # every evaluator sees it dead many times
            q.delete_dead(None)
            evaluated_more(runs, 10)
    finally:
        stop.set()
        for th in threads:
            th.join(10)
    assert min(runs) > 10
    assert captured.of("dlq") == ["firing", "resolved"] * 3
    assert [level for level, _ in captured.logged("dlq")] == [logging.WARNING, logging.INFO] * 3


def test_tracker_reports_changes_once_and_ignores_older_snapshots(q: TaskQueue) -> None:
    rule = DlqSizeAbove(name="dlq", threshold=0)
    firing = AlertState(rule, True, 1, "one dead task")
    ok = AlertState(rule, False, 0, "empty")
    tracker = AlertTracker(q)
    assert tracker.update([ok], at=100.0) == []  # first seen as ok: not a transition
    [change] = tracker.update([firing], at=101.0)
    assert (change.state, change.previous, change.since) == ("firing", "ok", 101.0)
    assert tracker.update([firing], at=102.0) == []  # no change, no report
    assert tracker.update([ok], at=101.5) == []  # a slower evaluator's older snapshot: ignored
    assert tracker.load()["dlq"].firing and tracker.load()["dlq"].evaluated_at == 102.0
    [change] = tracker.update([ok], at=103.0)
    assert change.state == "resolved" and tracker.load()["dlq"].since == 103.0
    tracker.forget(["dlq"])
    assert tracker.load() == {}


def test_the_guard_lets_one_evaluator_work_per_interval(q: TaskQueue) -> None:
    rules = [{"name": "dlq", "type": "dlq_size_above", "threshold": 0}]
    a, b = evaluator(q, rules, guard=True, interval=1.0), evaluator(q, rules, guard=True, interval=1.0)
    started = time.monotonic()
    assert a.run() is not None
    assert b.run() is None and a.run() is None  # within the interval: skipped
    eventually(lambda: b.run() is not None, timeout=5, interval=0.02, what="the guard to expire")
    assert time.monotonic() - started >= 0.85  # ... and not before (it expires after 0.9 interval)


def test_runfairworker_processes_report_once(redis_client: redis.Redis) -> None:
    """Two runfairworker processes evaluate FAIRQUE['ALERTS'] (tests/alerts_settings.py): the
    transition is logged by exactly one of them."""
    conf.install_providers()
    conf.reset()
    queue = get_queue()
    tracker = AlertTracker(queue)
    env = {"DJANGO_SETTINGS_MODULE": "tests.alerts_settings"}
    procs = [manage("runfairworker", wid, **env) for wid in ("worker-001", "worker-002")]
    outputs: list[str] = []
    try:
        eventually(lambda: len(collect_metrics(queue).live_workers) == 2, timeout=30, what="two workers")
        eventually(lambda: "dlq" in tracker.load(), timeout=10, what="a first evaluation")
        queue.push(dead_task("user:1"))
        eventually(lambda: tracker.load()["dlq"].firing, timeout=20, what="firing")
        queue.delete_dead(None)
        eventually(lambda: not tracker.load()["dlq"].firing, timeout=20, what="resolved")
    finally:
        for proc in procs:
            proc.terminate()
        outputs = [proc.communicate(timeout=30)[0] for proc in procs]
        conf.reset()
    text = "\n".join(outputs)
    assert text.count("FairQueue alert dlq FIRING") == 1, text
    assert text.count("FairQueue alert dlq RESOLVED") == 1, text


# --- evaluation is pure; the command ------------------------------------------------------------
def test_evaluate_is_pure(q: TaskQueue) -> None:
    rules = parse_rules([{"name": "dlq", "type": "dlq_size_above", "threshold": 0}])
    states = evaluate(collect_metrics(q), rules)
    assert [(s.name, s.firing) for s in states] == [("dlq", False)]
    assert AlertTracker(q).load() == {}  # nothing recorded


def test_fairque_alerts_command(redis_client: redis.Redis) -> None:
    alerts = [{"name": "dlq", "type": "dlq_size_above", "threshold": 0},
              {"name": "depth", "type": "total_depth_above", "threshold": 100}]
    with override_settings(FAIRQUE={**settings.FAIRQUE, "ALERTS": alerts}):
        out = io.StringIO()
        call_command("fairque_alerts", stdout=out)  # nothing fires: returns (exit 0)
        assert "ok      dlq [dlq_size_above, warning]" in out.getvalue() and "0 of 4 rule(s) firing" in out.getvalue()
        assert "ok      tenant-starved [unserved_tenants, critical]" in out.getvalue()  # built in
        queue = get_queue()
        queue.push(dead_task("user:1"))
        task = queue.pop("worker-001")
        assert task is not None and queue.fail(task, "boom", retry=False) == "dead"
        out = io.StringIO()
        with pytest.raises(SystemExit) as exit_info:
            call_command("fairque_alerts", "--json", stdout=out)
        assert exit_info.value.code == 1
        data = json.loads(out.getvalue())
        assert data["firing"] == 1 and [r["state"] for r in data["rules"]] == ["firing", "ok", "ok", "ok"]
        assert data["rules"][0]["since"] is None  # not recorded by any evaluator yet
        out = io.StringIO()
        with pytest.raises(SystemExit):
            call_command("fairque_alerts", "--notify", stdout=out)
        assert "FIRING  dlq" in out.getvalue() and "(since 0 s)" in out.getvalue()
        assert AlertTracker(queue).load()["dlq"].firing
    with override_settings(FAIRQUE={**settings.FAIRQUE}):
        out = io.StringIO()
        call_command("fairque_alerts", stdout=out)
        assert "tenant-starved [unserved_tenants, critical]" in out.getvalue()  # the built-in rules only
        assert "0 of 2 rule(s) firing" in out.getvalue()
