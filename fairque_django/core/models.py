"""Value types: :class:`Priority`, :class:`Task` and :class:`DLQEntry`. JSON only, never pickle."""

from __future__ import annotations

import binascii
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .context import run_task_inline
from .errors import CorruptTaskError, SerializationError, TaskValidationError


class Priority(IntEnum):
    """Task priority. ``CRITICAL`` uses a separate FIFO lane served first."""

    VERY_LOW = 1
    LOW = 2
    NORMAL = 3
    HIGH = 4
    VERY_HIGH = 5
    CRITICAL = 6

    @classmethod
    def coerce(cls, value: object) -> Priority:
        """Return ``value`` (a Priority or an int 1-6) as a Priority, else raise :class:`TaskValidationError`.

        Strings are refused on purpose: ``"high"`` is a typo for ``Priority.HIGH`` more often than not."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 6:
            return _PRIORITIES[value - 1]  # a worker decodes every task: skip the Enum call machinery
        raise TaskValidationError(
            f"invalid priority {value!r}: expected fairque_django.Priority or an int 1-6 "
            f"({', '.join(f'{m.value} {m.name}' for m in cls)})"
        )


# one encoder for every call: json.dumps with options builds a new encoder each time
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# ... and JSONEncoder.encode builds its C encoder on every call too (a third of the time of
# encoding a small task body): build it once. No circular-reference markers: a value that contains
# itself fails as nested too deeply (RecursionError), as a very deep one does.
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE: Any = (_C_MAKE_ENCODER(None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False,
                                  False) if _C_MAKE_ENCODER is not None else None)


_PRIORITIES: tuple[Priority, ...] = tuple(Priority)  # in value order, 1..6

# the fields of the usual stored body (:meth:`Task.from_body` reads it on a short path)
_PLAIN_FIELDS = frozenset({"f", "a", "k", "c", "p"})


def dumps(value: Any, what: str = "value") -> str:
    """Encode ``value`` as compact JSON, raising :class:`SerializationError` with a clear reason."""
    try:
        return "".join(_C_ENCODE(value, 0)) if _C_ENCODE is not None else _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} must be JSON-serialisable: {exc}") from exc
    except RecursionError as exc:  # e.g. a list nested 50,000 deep, or one that contains itself
        raise SerializationError(f"{what} is nested too deeply (or contains itself) to encode as JSON") from exc


# base64 with the URL-safe alphabet (A-Z a-z 0-9 - _): ids are key names, URL parts and command
# line arguments
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def new_task_id() -> str:
    """A new task id: 120 random bits as 20 URL-safe base64 characters, never starting with ``-``
    (a command line would read it as an option). Shorter than a hex UUID (32): every queued task
    stores its id in its key and in its lane, and with the default prefix a key of up to 30
    characters (``{fq}:t:`` and 20) takes 16 bytes less than one of 31 to 46 (a 48-byte block)."""
    task_id = binascii.b2a_base64(os.urandom(15), newline=False).translate(_URLSAFE).decode("ascii")
    return task_id if task_id[0] != "-" else "_" + task_id[1:]


def created_now() -> float:
    """The time now, in seconds rounded down to the millisecond: what a task body stores (``c``)."""
    return int(time.time() * 1000) / 1000


# A resolver the registry installs so Task.func can find registered functions without
# an import cycle. It returns None for names that are not registered.
_func_resolver: Callable[[str], Callable[..., Any] | None] = lambda name: None  # noqa: E731


def set_func_resolver(resolver: Callable[[str], Callable[..., Any] | None]) -> None:
    global _func_resolver
    _func_resolver = resolver


@dataclass(slots=True)
class Task:
    """One unit of work for one user (tenant).

    Static fields travel as the task's JSON body; ``retry_count``, ``attempts``,
    ``lease_token`` and ``worker_id`` are filled in by the queue when the task is popped.
    """

    task_id: str
    user_id: str | None
    priority: Priority = Priority.NORMAL
    payload: dict[str, Any] = field(default_factory=dict)
    func_name: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=created_now)
    execute_after: float | None = None
    max_retries: int | None = None
    timeout: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # deduplication and dependencies (docs/workflows.md)
    unique_key: str | None = None
    unique_for: float | None = None
    on_conflict: str = "drop"
    depends_on: list[tuple[str | None, str]] = field(default_factory=list)
    allow_failure: bool = False
    # state owned by the queue
    retry_count: int = 0
    attempts: int = 0
    lease_token: str | None = None
    worker_id: str | None = None
    lease_deadline: float | None = None
    # the enqueue span's context (W3C traceparent...) when OpenTelemetry is installed: core/tracing.py
    trace: dict[str, str] | None = None
    # set by the worker's heartbeat when the task was cancelled while leased (``cancelled()``)
    cancel_requested: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def create(
        cls,
        user_id: str | None = None,
        priority: Priority | int = Priority.NORMAL,
        payload: Mapping[str, Any] | None = None,
        *,
        func_name: str | None = None,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        execute_after: float | None = None,
        delay_seconds: float | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
        on_conflict: str = "drop",
        depends_on: Iterable[Any] = (),
        allow_failure: bool = False,
    ) -> Task:
        """Build a new task. Priority, retries and timeout are checked here; the JSON encoding of
        payload, args and kwargs when the task is pushed (enqueue time), where it is encoded once."""
        if delay_seconds is not None:
            if execute_after is not None:
                raise TaskValidationError("give either execute_after or delay_seconds, not both")
            execute_after = time.time() + float(delay_seconds)
        if max_retries is not None and (isinstance(max_retries, bool) or not isinstance(max_retries, int)
                                        or max_retries < 0):
            raise TaskValidationError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise TaskValidationError(f"timeout must be a number > 0, got {timeout!r}")
        task = cls(
            task_id=task_id or new_task_id(),
            user_id=user_id,
            priority=Priority.coerce(priority),
            payload=dict(payload or {}),
            func_name=func_name,
            args=list(args),
            kwargs=dict(kwargs or {}),
            execute_after=float(execute_after) if execute_after is not None else None,
            max_retries=max_retries,
            timeout=float(timeout) if timeout is not None else None,
            metadata=dict(metadata or {}),
        )
        if unique_key is not None or unique_for is not None or on_conflict != "drop":  # (else the defaults)
            task.set_unique(unique_key, unique_for, on_conflict)
        if depends_on or allow_failure:
            task.set_dependencies(depends_on, allow_failure)
        return task

    def set_unique(self, key: str | None, unique_for: float | None = None, on_conflict: str = "drop") -> None:
        """Make this task unique per tenant under ``key`` (None: not unique): while a task holding the
        key is unfinished, a push with the same key drops, replaces or debounces (``on_conflict``);
        ``unique_for`` (seconds) bounds how long the key is held (None: until the task ends)."""
        if on_conflict not in ON_CONFLICT:
            raise TaskValidationError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
        if unique_for is not None and (isinstance(unique_for, bool) or not isinstance(unique_for, (int, float))
                                       or not 0 < unique_for < 10**9):
            raise TaskValidationError(f"unique_for must be a number of seconds > 0, got {unique_for!r}")
        if key is not None and (not isinstance(key, str) or not key):
            raise TaskValidationError(f"unique_key must be a non-empty string, got {key!r}")
        if key is not None and on_conflict == "debounce" and unique_for is None:
            raise TaskValidationError("on_conflict='debounce' needs unique_for (the quiet time in seconds)")
        self.unique_key = key
        self.unique_for = float(unique_for) if unique_for is not None else None
        self.on_conflict = on_conflict

    def set_dependencies(self, depends_on: Iterable[Any], allow_failure: bool = False) -> None:
        """Run this task only once every task of ``depends_on`` succeeded: result handles and tasks
        (they carry their user), ``(user, task id)`` pairs, or bare ids (of this task's user)."""
        refs: list[tuple[str | None, str]] = []
        for dep in depends_on:
            ref = dependency_ref(dep)
            if ref not in refs:
                refs.append(ref)
        self.depends_on = refs
        self.allow_failure = bool(allow_failure)

    # --- serialisation -------------------------------------------------------------
    def to_body(self, ids: bool = True) -> dict[str, Any]:
        """The body: short keys, no NORMAL priority, ``c`` the creation time in ms; ``ids=False``
        (what Redis stores, docs/architecture.md "The stored task"): without the id and the user
        either (the task's key and its hash field ``u`` hold them: :meth:`from_json` takes them from
        its caller)."""
        body: dict[str, Any] = {"id": self.task_id, "user": self.user_id} if ids else {}
        if self.func_name:
            body["f"] = self.func_name
        if self.args:
            body["a"] = self.args
        if self.kwargs:
            body["k"] = self.kwargs
        if self.payload:
            body["payload"] = self.payload
        body["c"] = round(self.created_at * 1000)
        if self.priority != 3:
            body["p"] = int(self.priority)
        if self.execute_after is not None:
            body["after"] = self.execute_after
        if self.max_retries is not None:
            body["max_retries"] = self.max_retries
        if self.timeout is not None:
            body["timeout"] = self.timeout
        if self.metadata:
            body["meta"] = self.metadata
        if self.trace:
            body["trace"] = self.trace
        if self.unique_key is not None:
            body["unique"] = [self.unique_key, self.unique_for, self.on_conflict]
        if self.depends_on:
            body["deps"] = [list(ref) for ref in self.depends_on]
        if self.allow_failure:
            body["allow_failure"] = True
        return body

    def to_json(self, ids: bool = True) -> str:
        """The body as compact JSON (see :meth:`to_body`); :meth:`from_json` reads it back."""
        return dumps(self.to_body(ids), what=f"task {self.func_name or self.task_id} (payload, args and kwargs)")

    @classmethod
    def from_json(cls, raw: str | bytes, task_id: str | None = None, user_id: str | None = None) -> Task:
        """Decode a task body stored under ``task_id`` for ``user_id`` (a stored body names neither;
        one that names them, from :meth:`to_json` or of the former stored format, wins: the callers
        that know both compare); raises :class:`CorruptTaskError` on anything malformed."""
        try:
            body = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise CorruptTaskError(f"task body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise CorruptTaskError("task body is nested too deeply to decode") from exc
        if not isinstance(body, dict):
            raise CorruptTaskError("task body is not a JSON object")
        return cls.from_body(body, task_id, user_id)

    @classmethod
    def from_body(cls, body: dict[str, Any], task_id: str | None = None, user_id: str | None = None) -> Task:
        """:meth:`from_json` of a decoded body; reads the compact format (``f``, ``a``, ``k``, ``c`` in
        ms, ``p``) and the former one (``id``, ``user``, ``priority``, ``func``, ``args``, ``kwargs``,
        ``created`` in s)."""
        if task_id is not None and user_id is not None and body.keys() <= _PLAIN_FIELDS:
            task = cls._from_plain(body, task_id, user_id)
            if task is not None:
                return task
        try:
            if "c" in body:
                created = float(_opt(body, "c", (int, float), 0) or 0) / 1000  # (null: unknown, as absent)
            else:
                created = float(_opt(body, "created", (int, float), 0.0) or 0.0)
            task = cls(
                task_id=_req(body, "id", str) if "id" in body or task_id is None else task_id,
                user_id=_req(body, "user", str) if "user" in body or user_id is None else user_id,
                priority=Priority.coerce(body.get("p", body.get("priority", 3))),
                payload=_opt(body, "payload", dict, {}),
                func_name=_opt(body, "f" if "f" in body else "func", str, None),
                args=_opt(body, "a" if "a" in body else "args", list, []),
                kwargs=_opt(body, "k" if "k" in body else "kwargs", dict, {}),
                created_at=created,
                execute_after=_opt(body, "after", (int, float), None),
                max_retries=_opt(body, "max_retries", int, None),
                timeout=_opt(body, "timeout", (int, float), None),
                metadata=_opt(body, "meta", dict, {}),
                trace=_trace(body.get("trace")),
            )
            unique = _opt(body, "unique", list, None)
            if unique is not None:
                if len(unique) != 3:
                    raise CorruptTaskError("task body field 'unique' is not [key, for, on_conflict]")
                task.set_unique(unique[0], unique[1], unique[2])
            deps = _opt(body, "deps", list, [])
            if deps or body.get("allow_failure"):
                task.set_dependencies([tuple(d) if isinstance(d, list) else d for d in deps],
                                      body.get("allow_failure") is True)
        except TaskValidationError as exc:
            raise CorruptTaskError(f"task body is invalid: {exc}") from exc
        return task

    @classmethod
    def _from_plain(cls, body: dict[str, Any], task_id: str, user_id: str) -> Task | None:
        """:meth:`from_body` of the usual stored body (only ``f``, ``a``, ``k``, ``c``, ``p``, each of
        its type), without the general path's per-field checks (a worker decodes every task); None
        when a field is not as usual (the general path then decides)."""
        if None in body.values():
            return None
        func, args, kwargs, created = body.get("f"), body.get("a"), body.get("k"), body.get("c", 0)
        if ((func is not None and type(func) is not str) or (args is not None and type(args) is not list)
                or (kwargs is not None and type(kwargs) is not dict)
                or (type(created) is not int and type(created) is not float)):
            return None
        priority = body.get("p", 3)
        if type(priority) is not int or not 1 <= priority <= 6:
            return None
        return cls(task_id=task_id, user_id=user_id, priority=_PRIORITIES[priority - 1], func_name=func,
                   args=[] if args is None else args, kwargs={} if kwargs is None else kwargs,
                   created_at=float(created) / 1000)

    # --- execution -----------------------------------------------------------------
    @property
    def func(self) -> Callable[..., Any] | None:
        """The registered function this task runs, or None (payload-only or unregistered)."""
        return _func_resolver(self.func_name) if self.func_name else None

    def __call__(self) -> Any:
        """Execute the task's function directly, in this process, and return its result."""

        return run_task_inline(self)


ON_CONFLICT = ("drop", "replace", "debounce")


def dependency_ref(dep: Any) -> tuple[str | None, str]:
    """``(user, task id)`` of a dependency given as a result handle or a task (``.id`` / ``.task_id``
    and ``.user_id``), a ``(user, id)`` pair, or a bare id (user None: the dependent's own)."""
    if isinstance(dep, str):
        return None, dep
    if isinstance(dep, tuple) and len(dep) == 2 and all(isinstance(x, str) for x in dep):
        return dep[0], dep[1]
    task_id = getattr(dep, "task_id", None) or getattr(dep, "id", None)
    user_id = getattr(dep, "user_id", None)
    if isinstance(task_id, str) and (user_id is None or isinstance(user_id, str)):
        return user_id or None, task_id
    raise TaskValidationError(f"a dependency is a result handle, a Task, a task id or a (user, id) pair; got {dep!r}")


def _req(body: dict[str, Any], key: str, typ: type) -> Any:
    if key not in body:
        raise CorruptTaskError(f"task body is missing field {key!r}")
    value = body[key]
    if not isinstance(value, typ):
        raise CorruptTaskError(f"task body field {key!r} has type {type(value).__name__}")
    return value


def _opt(body: dict[str, Any], key: str, typ: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(key, default)
    if value is None or value is default:
        return value
    if not isinstance(value, typ) or isinstance(value, bool):
        raise CorruptTaskError(f"task body field {key!r} has type {type(value).__name__}")
    return value


def _trace(value: Any) -> dict[str, str] | None:
    """A body's trace context: a small dict of text, else None (garbage there never fails a task)."""
    if not isinstance(value, dict) or len(value) > 8:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return value


def retries_done(failures: int, *, dead: bool) -> int:
    """Runs that followed a failure: every failure was retried except a dead task's last one."""
    return max(0, failures - 1) if dead else failures


@dataclass(frozen=True, slots=True)
class DLQEntry:
    """A dead task with why and when it died.

    The counts, in the words used everywhere (CLI, admin, JSON, docs/reliability.md):
    ``attempts`` = times a worker started the task; ``failures`` = attempts that failed (error,
    timeout, expired lease); ``retries`` = runs after a failure (``failures - 1``: the last failure
    was not retried); ``max_retries`` = retries allowed (the task's own, else the queue's
    ``default_max_retries``). Failures and retries restart at 0 when a task is requeued.
    """

    task: Task
    error: str
    error_type: str
    traceback: str
    failure_type: str
    attempts: int
    retry_count: int  # the stored failure counter (field ``r``); read it as ``failures``
    dead_at: float
    user_id: str
    raw_body: str | None = None  # set when the body itself is corrupt
    max_retries: int | None = None  # effective value (header field ``m``); None if unknown

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def failures(self) -> int:
        return self.retry_count

    @property
    def retries(self) -> int:
        return retries_done(self.retry_count, dead=True)

    @property
    def retries_of(self) -> str:
        """``"2 of 3"``: retries used of max_retries."""
        return f"{self.retries} of {'?' if self.max_retries is None else self.max_retries}"

    @property
    def retries_text(self) -> str:
        """``"2 of 3 (max_retries)"``."""
        return f"{self.retries_of} (max_retries)"

    @property
    def counts_text(self) -> str:
        """``"Attempts: 3 · Retries: 2 of 2 (max_retries) · Failures: 3"``."""
        return f"Attempts: {self.attempts} · Retries: {self.retries_text} · Failures: {self.failures}"

    def counts(self) -> dict[str, int | None]:
        """The counts as JSON-ready data: attempts, failures, retries, max_retries."""
        return {"attempts": self.attempts, "failures": self.failures, "retries": self.retries,
                "max_retries": self.max_retries}
