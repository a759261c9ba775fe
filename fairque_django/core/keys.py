"""The one place that builds Redis key names.

Every key lives under ``{<prefix>}:`` so that all keys one script touches share a hash tag
(one cluster slot); the Lua scripts derive the same names from the prefix (see ``lua/lib.lua``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .exceptions import TaskValidationError
from .ids import user_id_problem

# Characters that would break key names or hash tags, plus whitespace and control characters.
_BAD_ID_CHARS = re.compile(r"[{}\s\x00-\x1f\x7f-\x9f]")


def validate_user_id(user_id: object, max_length: int = 200) -> str:
    """Return ``user_id`` if it is a usable user id (rules: :mod:`.ids`), else raise
    :class:`TaskValidationError`."""
    problem = user_id_problem(user_id, max_length)
    if problem is not None:
        raise TaskValidationError(problem)
    assert isinstance(user_id, str)
    return user_id


def validate_key_part(value: object, what: str, max_length: int = 200) -> str:
    """Validate a free-form key component (XCom key, worker id)."""
    if not isinstance(value, str) or not value:
        raise TaskValidationError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > max_length or _BAD_ID_CHARS.search(value):
        raise TaskValidationError(f"{what} {value[:50]!r} is too long or contains braces/whitespace")
    return value


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names for one prefix (``queue.stats_prefix``)."""

    prefix: str = "fq"

    @property
    def base(self) -> str:
        """The hash-tagged prefix passed to every script, e.g. ``{fq}``."""
        return "{" + self.prefix + "}"

    @property
    def stats(self) -> str:
        return f"{self.base}:queue:stats"

    @property
    def seq(self) -> str:
        return f"{self.base}:seq"

    @property
    def delayed(self) -> str:
        return f"{self.base}:delayed"

    @property
    def leases(self) -> str:
        return f"{self.base}:leases"

    @property
    def dlq(self) -> str:
        return f"{self.base}:dlq"

    @property
    def live(self) -> str:
        return f"{self.base}:live"

    @property
    def vclock(self) -> str:
        return f"{self.base}:vclock"

    @property
    def layout(self) -> str:
        """The data layout version the stored tasks follow (see ``TaskQueue.upgrade_layout``)."""
        return f"{self.base}:layout"

    @property
    def workers(self) -> str:
        return f"{self.base}:workers"

    @property
    def workers_stopped(self) -> str:
        """Hash worker id -> time of its last clean stop."""
        return f"{self.base}:workers:stopped"

    def task(self, task_id: str) -> str:
        return f"{self.base}:t:{task_id}"

    def critical(self, user_id: str) -> str:
        return f"{self.base}:queue:user:{user_id}:critical"

    def normal(self, user_id: str) -> str:
        return f"{self.base}:queue:user:{user_id}:normal"

    def ready(self, partition: str) -> str:
        return f"{self.base}:ready:{partition}"

    def vfinish(self, partition: str) -> str:
        return f"{self.base}:vfinish:{partition}"

    def wake(self, partition: str) -> str:
        return f"{self.base}:wake:{partition}"

    def parked(self, partition: str) -> str:
        return f"{self.base}:parked:{partition}"

    def hand(self, token: str) -> str:
        return f"{self.base}:hand:{token}"

    def steal_set(self, worker_id: str) -> str:
        return f"{self.base}:steal:{worker_id}"

    def steal_digest(self, worker_id: str) -> str:
        return f"{self.base}:stealdigest:{worker_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.base}:worker:{worker_id}"

    # user ids and XCom keys / task ids may both contain ':', so the user id is length-prefixed:
    # ("acme:eu", "report") and ("acme", "eu:report") must never name the same key.
    def metrics_user(self, user_id: str) -> str:
        """Wait/run histograms of one user (see lua/lib.lua ``observe``)."""
        return f"{self.base}:m:{user_id}"

    @property
    def metrics_all(self) -> str:
        """Wait/run histograms of all users together."""
        return f"{self.base}:m:~all"

    @property
    def metrics_throughput(self) -> str:
        """Completions per minute (field: epoch minute)."""
        return f"{self.base}:m:~tput"

    @property
    def samples(self) -> str:
        """Counter snapshots (one per ``sample_interval``), the base of rates and counter windows."""
        return f"{self.base}:admin:samples"

    @property
    def samples_guard(self) -> str:
        """``SET NX`` guard: at most one counter snapshot per interval across processes."""
        return f"{self.samples}:guard"

    @property
    def history(self) -> str:
        """Dashboard chart points (one per minute)."""
        return f"{self.base}:m:history"

    @property
    def history_guard(self) -> str:
        return f"{self.history}:guard"

    @property
    def alerts(self) -> str:
        """Alert rule states (hash ``s:<rule>``, ``t:``, ``e:``, ``d:`` fields)."""
        return f"{self.base}:alerts"

    @property
    def alerts_guard(self) -> str:
        """``SET NX`` guard: one alert evaluation per interval across workers."""
        return f"{self.alerts}:guard"

    def xcom(self, user_id: str, key: str) -> str:
        return f"{self.base}:xcom:{len(user_id)}:{user_id}:{key}"

    def result(self, user_id: str, task_id: str) -> str:
        return f"{self.base}:result:{len(user_id)}:{user_id}:{task_id}"

    def result_owner(self, task_id: str) -> str:
        """Which user a stored result belongs to (lets trusted code find it by id alone)."""
        return f"{self.base}:result_owner:{task_id}"
