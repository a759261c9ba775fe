"""Django side of the alert rules (``FAIRQUE["ALERTS"]``): evaluation in the workers and delivery.

``runfairworker`` passes an :class:`AlertEvaluator` to the core ``Worker`` as its periodic hook:
every ``FAIRQUE["ALERT_INTERVAL"]`` seconds one worker (a Redis ``SET NX`` guard lets only one
of them work per interval) collects a metrics snapshot, evaluates the rules and records their
states with :class:`~fairque_django.core.observe.alerts.AlertTracker`. Each transition is then reported
once, whichever worker saw it:

* the Django signal :data:`fairque_django.signals.fairque_alert` (``rule``, ``state``, ``details``);
* a log record on the ``fairque_django.alerts`` logger: WARNING when firing, INFO when resolved,
  with ``extra`` attributes ``alert_rule``, ``alert_type``, ``alert_state``, ``alert_severity``
  and ``alert_details`` -- so any handler (``AdminEmailHandler``, Sentry, a chat webhook) can
  deliver it.

The rules are ``FAIRQUE["ALERTS"]`` plus the built-in ``tenant-starved`` rule (:func:`alert_rules`).
The same evaluator also stores one dashboard chart point per minute (``record_history``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import connections

from .conf import get_queue, get_setting
from .core.observe import SAMPLE_INTERVAL, QueueMetrics, collect_metrics, record_history
from .core.observe.alert_rules import (
    FIRING,
    AlertRule,
    AlertState,
    evaluate,
    required_top_n,
    required_windows,
    with_builtin_rules,
)
from .core.observe.alerts import AlertTracker, AlertTransition
from .core.observe.fanout import QueueShards
from .core.queue import redis_errors
from .signals import fairque_alert

__all__ = ["AlertEvaluator", "alert_rules", "current_alerts", "logger"]

logger = logging.getLogger("fairque_django.alerts")


def alert_rules() -> tuple[AlertRule, ...]:
    """The rules of ``FAIRQUE["ALERTS"]`` plus the built-in ones (``tenant-starved``) they do not
    replace (:func:`~fairque_django.core.observe.alert_rules.with_builtin_rules`)."""
    return with_builtin_rules(get_setting("ALERTS"))


class AlertEvaluator:
    """Evaluates the rules and reports transitions (see the module docstring). Callable with no
    arguments, as the core ``Worker``'s ``periodic`` hook."""

    def __init__(self, queue: QueueShards | None = None, rules: Iterable[AlertRule] | None = None, *,
                 interval: float | None = None, top_n: int | None = None, guard: bool = True,
                 history: bool = True, sample_interval: float = SAMPLE_INTERVAL) -> None:
        self._queue = queue
        self.rules: tuple[AlertRule, ...] = tuple(rules) if rules is not None else alert_rules()
        self.interval = float(interval if interval is not None else get_setting("ALERT_INTERVAL"))
        self.top_n = int(top_n if top_n is not None else get_setting("METRICS_TOP_TENANTS"))
        self.guard = guard
        self.history = history
        self.sample_interval = sample_interval

    @property
    def queue(self) -> QueueShards:
        return self._queue if self._queue is not None else get_queue()

    def __call__(self) -> None:
        self.run()

    def _acquire(self) -> bool:
        """One evaluation per interval across processes (the guard expires a little early so
        that the workers' own timers, which drift, never skip a whole interval)."""
        home = self.queue.home_queue  # the guard and the states are home keys
        with redis_errors("alert guard"):
            return bool(home.client.set(home.keys.guard(home.keys.alerts), "1", nx=True,
                                         px=max(1, int(self.interval * 900))))

    def collect(self) -> QueueMetrics:
        """A metrics snapshot covering what the rules need (tenants scanned, counter windows)."""
        return collect_metrics(self.queue, required_top_n(self.rules, self.top_n),
                               windows=required_windows(self.rules), sample_interval=self.sample_interval,
                               alerts=True)

    def check(self) -> list[AlertState]:
        """The rules' current states, without recording or reporting anything."""
        return evaluate(self.collect(), self.rules)

    def run(self) -> list[AlertState] | None:
        """Evaluate, record and report transitions. None when another process holds the guard."""
        if self.guard and not self._acquire():
            return None
        queue = self.queue
        if not self.rules:
            home = queue.home_queue
            with redis_errors("alert history"):
                if not self.history or home.client.exists(home.keys.guard(home.keys.history)):
                    return []
        metrics = self.collect()
        if self.history:
            record_history(queue, metrics)
        if not self.rules:
            return []
        states = evaluate(metrics, self.rules)
        for transition in AlertTracker(queue).update(states, at=metrics.timestamp):
            self.notify(transition)
        return states

    def notify(self, transition: AlertTransition) -> None:
        """Send the signal and the log record of one transition."""
        rule = transition.rule
        details: dict[str, Any] = {**transition.details, "since": transition.since, "rule": rule.name}
        level = logging.WARNING if transition.state == FIRING else logging.INFO
        logger.log(level, "FairQueue alert %s %s: %s", rule.name, transition.state.upper(),
                   transition.alert.message,
                   extra={"alert_rule": rule.name, "alert_type": rule.type, "alert_state": transition.state,
                          "alert_severity": rule.severity, "alert_details": details})
        # receivers run in the worker's heartbeat thread: close the database connections they open
        # there (nothing else would), leave alone those that were open before
        opened = {c.alias for c in connections.all(initialized_only=True) if c.connection is not None}
        try:
            for receiver, response in fairque_alert.send_robust(AlertEvaluator, rule=rule, state=transition.state,
                                                                details=details):
                if isinstance(response, Exception):
                    logger.error("receiver %r of fairque_alert raised %s: %s", receiver, type(response).__name__,
                                 response)
        finally:
            for conn in connections.all(initialized_only=True):
                if conn.alias not in opened and conn.connection is not None:
                    conn.close()


def current_alerts(queue: QueueShards | None = None, rules: Iterable[AlertRule] | None = None,
                   metrics: QueueMetrics | None = None) -> list[dict[str, Any]]:
    """Every rule's state now (evaluated on ``metrics`` or a fresh snapshot), with the time its
    recorded state began (``since``; None when no process recorded it yet). The recorded states
    come from ``metrics`` when it read them (``collect_metrics(..., alerts=True)``)."""
    evaluator = AlertEvaluator(queue, rules, guard=False)
    if not evaluator.rules:
        return []
    snapshot = metrics if metrics is not None else evaluator.collect()
    states = evaluate(snapshot, evaluator.rules)
    stored = AlertTracker(evaluator.queue).load((s.name for s in states), snapshot=snapshot)
    out = []
    for s in states:
        rec = stored.get(s.name)
        since = rec.since if rec is not None and rec.state == s.state else None
        out.append({"name": s.name, "type": s.rule.type, "severity": s.rule.severity, "state": s.state,
                    "firing": s.firing, "value": s.value, "threshold": s.rule.threshold_value,
                    "message": s.message, "since": since, "description": s.rule.description,
                    "details": s.details,
                    "evaluated_at": rec.evaluated_at if rec is not None else None})
    return out
