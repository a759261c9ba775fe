"""FairQueueConfig: construction, YAML/env loading, validation, ownership and partitions.

Plain unit tests: no Redis, no Django settings needed.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fairque_django.core.config import (
    GLOB_CHARS,
    POOL_PARTITION,
    FairQueueConfig,
    QueueConfig,
    RedisConfig,
    Section,
    WorkerConfig,
    collect,
    glob_match,
    glob_to_lua_pattern,
    is_pattern,
    problems_of,
    set_default_redis_provider,
)
from fairque_django.core.config.schema import QUEUE, REDIS, SECTIONS, WORKER, doc_default
from fairque_django.core.errors import ConfigurationError, TaskValidationError, UnknownWorkerError
from fairque_django.core.keys import validate_user_id
from tests.support.processes import ROOT

# Verbatim from the "Configuration" section of FAIRQUEUE_SPEC.md.
SEED_YAML = """\
# fairque_config.yaml
redis:
  host: "localhost"
  port: 6379
  db: 0

workers:
  - id: "worker-001"
    assigned_users: ["user:1", "user:3", "user:5"]
    steal_targets: ["user:2", "user:4", "user:6"]
    poll_interval_seconds: 1.0
    max_concurrent_tasks: 10
  - id: "worker-002"
    assigned_users: ["user:2", "user:4", "user:6"]
    steal_targets: ["user:1", "user:3", "user:5"]
    poll_interval_seconds: 1.0
    max_concurrent_tasks: 10

queue:
  stats_prefix: "fq"
  default_max_retries: 3
  enable_pipeline_optimization: true
  xcom_ttl_seconds: 3600
"""


@pytest.fixture(autouse=True)
def _no_default_redis_provider() -> Iterator[None]:
    from fairque_django.core import config as config_module

    previous = config_module.default_redis_provider()
    set_default_redis_provider(None)
    yield
    set_default_redis_provider(previous)


def two_workers(**queue: Any) -> dict[str, Any]:
    return {
        "workers": [
            {"id": "w1", "assigned_users": ["a", "b"], "steal_targets": ["c"]},
            {"id": "w2", "assigned_users": ["c"], "steal_targets": ["a"]},
        ],
        "queue": queue,
    }


def config_error(data: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigurationError) as info:
        FairQueueConfig.from_dict(data, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- helpers


def test_is_pattern() -> None:
    assert GLOB_CHARS == "*?"
    assert is_pattern("tenant:*")
    assert is_pattern("user:?")
    assert not is_pattern("user:1")
    assert not is_pattern("user[1]")


def test_glob_to_lua_pattern_anchors_and_maps_wildcards() -> None:
    assert glob_to_lua_pattern("tenant:*") == "^tenant:.*$"
    assert glob_to_lua_pattern("user:?") == "^user:.$"
    assert glob_to_lua_pattern("") == "^$"


def test_glob_to_lua_pattern_escapes_magic_characters() -> None:
    assert glob_to_lua_pattern("a.b-c+d%e") == "^a%.b%-c%+d%%e$"
    assert glob_to_lua_pattern("(x)[y]^$") == "^%(x%)%[y%]%^%$$"
    assert glob_to_lua_pattern("t:*.?") == "^t:.*%..$"


def test_glob_match_only_star_and_question_mark_are_wildcards() -> None:
    assert glob_match("tenant:*", "tenant:acme")
    assert glob_match("tenant:*", "tenant:")
    assert not glob_match("tenant:*", "xtenant:acme")
    assert glob_match("user:?", "user:7")
    assert not glob_match("user:?", "user:77")
    # "[" is literal, unlike fnmatch
    assert glob_match("u[ab]*", "u[ab]1")
    assert not glob_match("u[ab]*", "ua1")
    # regex metacharacters are literal too
    assert not glob_match("a.c", "abc")
    assert glob_match("a.c", "a.c")


# --------------------------------------------------------------------------- RedisConfig


def test_redis_client_kwargs() -> None:
    cfg = RedisConfig(
        host="redis.internal",
        port=6380,
        db=2,
        password="pw",
        username="app",
        ssl=True,
        socket_timeout=1,
        max_connections=20,
    )
    kwargs = cfg.client_kwargs()
    assert kwargs["host"] == "redis.internal"
    assert kwargs["port"] == 6380
    assert kwargs["db"] == 2
    assert kwargs["password"] == "pw"
    assert kwargs["username"] == "app"
    assert kwargs["ssl"] is True
    assert kwargs["socket_timeout"] == 1.0
    assert isinstance(kwargs["socket_timeout"], float)
    assert kwargs["max_connections"] == 20
    assert kwargs["decode_responses"] is False
    assert "url" not in kwargs
    url_kwargs = cfg.url_kwargs()
    assert url_kwargs["decode_responses"] is False
    assert "host" not in url_kwargs


def test_redis_repr_hides_secrets() -> None:
    text = repr(RedisConfig(password="hunter2", url="redis://user:s3cret@host:6379/0"))
    assert "hunter2" not in text
    assert "s3cret" not in text
    assert "redis://user:***@host:6379/0" in text


def test_redis_url_scheme_checked() -> None:
    assert RedisConfig(url="rediss://h:1/0").url == "rediss://h:1/0"
    with pytest.raises(ConfigurationError, match=r"redis\.url"):
        RedisConfig(url="http://localhost")


# --------------------------------------------------------------------------- create_default


def test_create_default_readme_example() -> None:
    config = FairQueueConfig.create_default(
        worker_id="worker-001",
        assigned_users=["user:1", "user:2", "user:3"],
        steal_targets=["user:4", "user:5"],
    )
    assert config.worker_id == "worker-001"
    assert config.worker_ids == ("worker-001",)
    worker = config.worker
    assert worker.assigned_users == ("user:1", "user:2", "user:3")
    assert worker.steal_targets == ("user:4", "user:5")
    assert config.redis == RedisConfig()
    assert config.queue == QueueConfig()


def test_create_default_without_arguments() -> None:
    config = FairQueueConfig.create_default()
    assert config.worker_id == "worker-001"
    assert config.worker.assigned_users == ()
    assert config.owner_of("anyone") is None


def test_create_default_worker_and_queue_overrides() -> None:
    config = FairQueueConfig.create_default(
        "w9",
        ("a",),
        ("b",),
        poll_interval_seconds=0.1,
        max_concurrent_tasks=4,
        task_timeout_seconds=2,
        heartbeat_interval_seconds=1,
        xcom_ttl_seconds=10,
        lease_timeout_seconds=2.5,
        stats_prefix="test",
        fairness="time",
        user_weights={"a": 3},
    )
    assert config.worker.poll_interval_seconds == 0.1
    assert config.worker.max_concurrent_tasks == 4
    assert config.worker.task_timeout_seconds == 2.0
    assert isinstance(config.worker.task_timeout_seconds, float)
    assert config.worker.heartbeat_interval_seconds == 1.0
    assert config.queue.xcom_ttl_seconds == 10
    assert config.queue.lease_timeout_seconds == 2.5
    assert config.queue.stats_prefix == "test"
    assert config.queue.fairness == "time"
    assert config.weight_of("a") == 3.0
    assert config.weight_of("b") == 1.0


def test_create_default_redis_as_dict_or_object() -> None:
    from_dict = FairQueueConfig.create_default(redis={"host": "h", "port": 7000, "db": 3})
    assert from_dict.redis == RedisConfig(host="h", port=7000, db=3)
    obj = RedisConfig(url="redis://example:6379/1")
    assert FairQueueConfig.create_default(redis=obj).redis is obj


def test_create_default_redis_dict_is_validated() -> None:
    with pytest.raises(ConfigurationError, match=r"redis\.port"):
        FairQueueConfig.create_default(redis={"port": 0})
    with pytest.raises(ConfigurationError, match=r"redis\.hots.*did you mean 'host'"):
        FairQueueConfig.create_default(redis={"hots": "x"})


def test_create_default_queue_dict_plus_keyword() -> None:
    config = FairQueueConfig.create_default(
        queue={"batch_size": 5, "xcom_ttl_seconds": 7}, xcom_ttl_seconds=9
    )
    assert config.queue.batch_size == 5
    assert config.queue.xcom_ttl_seconds == 9
    base = QueueConfig(stats_prefix="p")
    config = FairQueueConfig.create_default(queue=base, batch_size=2)
    assert config.queue.stats_prefix == "p"
    assert config.queue.batch_size == 2


def test_create_default_unknown_override_is_named() -> None:
    with pytest.raises(ConfigurationError) as info:
        FairQueueConfig.create_default(poll_interval=0.1)
    message = str(info.value)
    assert "poll_interval" in message
    assert "did you mean 'poll_interval_seconds'" in message
    with pytest.raises(ConfigurationError, match="workers"):
        FairQueueConfig.create_default(workers=[])


def test_create_default_validates_overrides_with_key_path() -> None:
    with pytest.raises(ConfigurationError, match=r"workers\[0\]\.poll_interval_seconds"):
        FairQueueConfig.create_default(poll_interval_seconds=0)
    with pytest.raises(ConfigurationError, match=r"queue\.xcom_ttl_seconds"):
        FairQueueConfig.create_default(xcom_ttl_seconds=0)
    with pytest.raises(ConfigurationError, match=r"workers\[0\]\.assigned_users"):
        FairQueueConfig.create_default(assigned_users="user:1")
    with pytest.raises(ConfigurationError, match=r"workers\[0\]\.id"):
        FairQueueConfig.create_default(worker_id="bad id")


def test_default_redis_provider_is_used_when_no_redis_given() -> None:
    provided = RedisConfig(host="from-django", db=4)
    set_default_redis_provider(lambda: provided)
    assert FairQueueConfig.create_default().redis == provided
    assert FairQueueConfig.from_dict({}).redis == provided
    assert FairQueueConfig.from_dict({"redis": {"db": 1}}).redis == RedisConfig(db=1)
    assert FairQueueConfig.create_default(redis={"db": 2}).redis == RedisConfig(db=2)
    set_default_redis_provider(None)
    assert FairQueueConfig.create_default().redis == RedisConfig()


def test_default_redis_provider_must_return_redis_config() -> None:
    set_default_redis_provider(lambda: "redis://x")  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigurationError, match="redis"):
        FairQueueConfig.create_default()


# --------------------------------------------------------------------------- YAML


def test_seed_yaml_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "fairque_config.yaml"
    path.write_text(SEED_YAML, encoding="utf-8")
    config = FairQueueConfig.from_yaml(path)
    assert config.redis == RedisConfig(host="localhost", port=6379, db=0)
    assert config.worker_ids == ("worker-001", "worker-002")
    w1 = config.get_worker("worker-001")
    assert w1.assigned_users == ("user:1", "user:3", "user:5")
    assert w1.steal_targets == ("user:2", "user:4", "user:6")
    assert w1.poll_interval_seconds == 1.0
    assert w1.max_concurrent_tasks == 10
    assert config.queue.stats_prefix == "fq"
    assert config.queue.default_max_retries == 3
    assert config.queue.enable_pipeline_optimization is True
    assert config.queue.xcom_ttl_seconds == 3600
    assert config.worker_id is None
    assert config.owner_of("user:4") == "worker-002"
    assert config.owner_of("user:5") == "worker-001"
    assert config.steal_partitions("worker-001") == ("worker-002",)
    assert config.steal_partitions("worker-002") == ("worker-001",)
    # str path works too, and worker_id selects the current worker
    chosen = FairQueueConfig.from_yaml(str(path), worker_id="worker-002")
    assert chosen.worker.id == "worker-002"


def test_from_yaml_unknown_worker_id(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(SEED_YAML, encoding="utf-8")
    with pytest.raises(UnknownWorkerError) as info:
        FairQueueConfig.from_yaml(path, worker_id="worker-003")
    assert "worker-003" in str(info.value)
    assert "worker-001, worker-002" in str(info.value)


def test_from_yaml_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigurationError, match=re.escape(str(path))):
        FairQueueConfig.from_yaml(path)


def test_from_yaml_malformed_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("redis:\n  host: localhost\n  port: [6379\nqueue: {}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        FairQueueConfig.from_yaml(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(r"line [34]", message)


def test_from_yaml_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- redis\n- workers\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="must be a mapping") as info:
        FairQueueConfig.from_yaml(path)
    assert str(path) in str(info.value)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="empty"):
        FairQueueConfig.from_yaml(empty)


def test_from_yaml_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("redis:\n  port: 6379\n  port: 6380\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"duplicate key 'port'") as info:
        FairQueueConfig.from_yaml(path)
    assert "line 3" in str(info.value)
    assert str(path) in str(info.value)
    # a repeated key in different mappings is fine, and merge keys may override
    ok = tmp_path / "ok.yaml"
    ok.write_text("base: &b {port: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="unknown key 'base'"):
        FairQueueConfig.from_yaml(ok)
    merged = tmp_path / "merged.yaml"
    merged.write_text("redis:\n  <<: {port: 1, db: 2}\n  port: 7000\n", encoding="utf-8")
    assert FairQueueConfig.from_yaml(merged).redis == RedisConfig(port=7000, db=2)


def test_from_yaml_validation_error_keeps_key_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        SEED_YAML.replace("max_concurrent_tasks: 10", "max_concurrent_tasks: 0", 1), encoding="utf-8"
    )
    with pytest.raises(ConfigurationError, match=r"workers\[0\]\.max_concurrent_tasks"):
        FairQueueConfig.from_yaml(path)


def test_from_yaml_expands_placeholders(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text('redis:\n  port: "${P}"\n', encoding="utf-8")
    assert FairQueueConfig.from_yaml(path, environ={"P": "7001"}).redis.port == 7001


# --------------------------------------------------------------------------- env placeholders


def test_placeholders_set_unset_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FQ_TEST_HOST", "redis.example")
    monkeypatch.delenv("FQ_TEST_MISSING", raising=False)
    config = FairQueueConfig.from_dict(
        {
            "redis": {"host": "${FQ_TEST_HOST}", "password": "${FQ_TEST_MISSING:-fallback}"},
            "queue": {"stats_prefix": "app-${FQ_TEST_MISSING:-dev}"},
        }
    )
    assert config.redis.host == "redis.example"
    assert config.redis.password == "fallback"
    assert config.queue.stats_prefix == "app-dev"


def test_placeholder_unset_without_default_names_key_and_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FQ_TEST_MISSING", raising=False)
    message = config_error({"redis": {"host": "${FQ_TEST_MISSING}"}})
    assert message.startswith("redis.host:")
    assert "FQ_TEST_MISSING" in message
    message = config_error({"workers": [{"id": "w", "assigned_users": ["ok", "${FQ_TEST_MISSING}"]}]})
    assert "workers[0].assigned_users[1]" in message
    assert "FQ_TEST_MISSING" in message


def test_whole_placeholder_is_converted_to_field_type() -> None:
    env = {"PORT": "6390", "DB": "3", "SSL": "true", "TIMEOUT": "2.5", "MAXC": "7", "TTL": "60"}
    config = FairQueueConfig.from_dict(
        {
            "redis": {
                "port": "${PORT}",
                "db": "${DB}",
                "ssl": "${SSL}",
                "socket_timeout": "${TIMEOUT}",
                "max_connections": "${MAXC}",
            },
            "queue": {"xcom_ttl_seconds": "${TTL}", "enable_pipeline_optimization": "${NOPE:-off}"},
            "workers": [
                {
                    "id": "${WID:-w1}",
                    "poll_interval_seconds": "${POLL:-0.5}",
                    "assigned_users": "${USERS:-a, b,c}",
                }
            ],
            "worker_id": "${WID:-w1}",
        },
        environ=env,
    )
    assert config.redis.port == 6390
    assert config.redis.db == 3
    assert config.redis.ssl is True
    assert config.redis.socket_timeout == 2.5
    assert config.redis.max_connections == 7
    assert config.queue.xcom_ttl_seconds == 60
    assert config.queue.enable_pipeline_optimization is False
    assert config.worker.id == "w1"
    assert config.worker.poll_interval_seconds == 0.5
    assert config.worker.assigned_users == ("a", "b", "c")


def test_empty_placeholder_in_optional_field_is_none() -> None:
    config = FairQueueConfig.from_dict(
        {"redis": {"password": "${PW:-}", "url": "${URL}", "max_connections": "${MAXC:-}"}},
        environ={"URL": ""},
    )
    assert config.redis.password is None
    assert config.redis.url is None
    assert config.redis.max_connections is None


def test_placeholder_conversion_failure_names_key() -> None:
    message = config_error({"redis": {"port": "${PORT}"}}, environ={"PORT": "sixty"})
    assert message.startswith("redis.port:")
    assert "'sixty'" in message
    message = config_error({"redis": {"ssl": "${SSL}"}}, environ={"SSL": "maybe"})
    assert message.startswith("redis.ssl:")


def test_placeholder_default_used_when_variable_is_empty() -> None:
    config = FairQueueConfig.from_dict({"redis": {"host": "${H:-fallback}"}}, environ={"H": ""})
    assert config.redis.host == "fallback"


def test_literal_string_is_not_converted() -> None:
    # only placeholders are converted; a literal "6379" string is a type error
    message = config_error({"redis": {"port": "6379"}})
    assert message.startswith("redis.port:")
    assert "integer" in message


def test_escaped_and_malformed_placeholders() -> None:
    config = FairQueueConfig.from_dict({"redis": {"password": "a$${B}c"}}, environ={})
    assert config.redis.password == "a${B}c"
    assert "redis.password" in config_error({"redis": {"password": "${1BAD}"}}, environ={})
    assert "redis.password" in config_error({"redis": {"password": "${OPEN"}}, environ={})


def test_placeholder_in_weight_keys_and_values() -> None:
    config = FairQueueConfig.from_dict(
        {"queue": {"user_weights": {"${VIP}": "${W}"}}}, environ={"VIP": "tenant:vip", "W": "4"}
    )
    assert config.weight_of("tenant:vip") == 4.0


# --------------------------------------------------------------------------- validation

VALIDATION_CASES: list[tuple[dict[str, Any], str]] = [
    # unknown keys at every level
    ({"redsi": {}}, "redsi"),
    ({"redis": {"prot": 1}}, "redis.prot"),
    ({"workers": [{"id": "w", "asigned_users": []}]}, "workers[0].asigned_users"),
    ({"queue": {"xcom_ttl": 1}}, "queue.xcom_ttl"),
    # wrong section types
    ({"redis": "localhost"}, "redis"),
    ({"workers": {"id": "w"}}, "workers"),
    ({"workers": ["w"]}, "workers[0]"),
    ({"queue": []}, "queue"),
    ({"workers": [{"assigned_users": []}]}, "workers[0].id"),
    # wrong value types
    ({"redis": {"port": True}}, "redis.port"),
    ({"redis": {"port": 6379.0}}, "redis.port"),
    ({"redis": {"db": None}}, "redis.db"),
    ({"redis": {"host": 1}}, "redis.host"),
    ({"redis": {"ssl": "yes"}}, "redis.ssl"),
    ({"redis": {"socket_timeout": False}}, "redis.socket_timeout"),
    ({"redis": {"socket_timeout": float("inf")}}, "redis.socket_timeout"),
    ({"workers": [{"id": "w", "max_concurrent_tasks": 2.0}]}, "workers[0].max_concurrent_tasks"),
    ({"workers": [{"id": "w", "poll_interval_seconds": "1"}]}, "workers[0].poll_interval_seconds"),
    ({"workers": [{"id": "w", "assigned_users": "user:1"}]}, "workers[0].assigned_users"),
    ({"workers": [{"id": "w", "assigned_users": {"a": 1}}]}, "workers[0].assigned_users"),
    ({"workers": [{"id": "w", "steal_targets": ["a", 2]}]}, "workers[0].steal_targets[1]"),
    ({"queue": {"enable_pipeline_optimization": 1}}, "queue.enable_pipeline_optimization"),
    ({"queue": {"user_weights": ["a"]}}, "queue.user_weights"),
    ({"queue": {"user_weights": {"a": True}}}, 'queue.user_weights["a"]'),
    # ranges
    ({"redis": {"port": 0}}, "redis.port"),
    ({"redis": {"port": 65536}}, "redis.port"),
    ({"redis": {"db": -1}}, "redis.db"),
    ({"redis": {"db": 16}}, "redis.db"),
    ({"redis": {"socket_timeout": 0}}, "redis.socket_timeout"),
    ({"redis": {"socket_connect_timeout": -1}}, "redis.socket_connect_timeout"),
    ({"redis": {"max_connections": 0}}, "redis.max_connections"),
    ({"redis": {"host": ""}}, "redis.host"),
    ({"workers": [{"id": "w", "poll_interval_seconds": 0}]}, "workers[0].poll_interval_seconds"),
    ({"workers": [{"id": "w", "max_concurrent_tasks": 0}]}, "workers[0].max_concurrent_tasks"),
    ({"workers": [{"id": "w", "task_timeout_seconds": 0}]}, "workers[0].task_timeout_seconds"),
    ({"workers": [{"id": "w", "graceful_shutdown_timeout": -1}]}, "workers[0].graceful_shutdown_timeout"),
    ({"workers": [{"id": "w", "heartbeat_interval_seconds": 0}]}, "workers[0].heartbeat_interval_seconds"),
    ({"queue": {"default_max_retries": -1}}, "queue.default_max_retries"),
    ({"queue": {"xcom_ttl_seconds": 0}}, "queue.xcom_ttl_seconds"),
    ({"queue": {"lease_timeout_seconds": 0}}, "queue.lease_timeout_seconds"),
    ({"queue": {"max_payload_bytes": 0}}, "queue.max_payload_bytes"),
    ({"queue": {"batch_size": 0}}, "queue.batch_size"),
    ({"queue": {"result_ttl_seconds": 0}}, "queue.result_ttl_seconds"),
    ({"queue": {"max_user_id_length": 0}}, "queue.max_user_id_length"),
    ({"queue": {"retry_backoff_base_seconds": -1}}, "queue.retry_backoff_base_seconds"),
    ({"queue": {"user_weights": {"user:1": 0}}}, 'queue.user_weights["user:1"]'),
    ({"queue": {"user_weights": {"user:1": -2.5}}}, 'queue.user_weights["user:1"]'),
    ({"queue": {"user_weights": {"tenant:*": 2}}}, 'queue.user_weights["tenant:*"]'),
    ({"queue": {"user_weights": {"bad user": 2}}}, 'queue.user_weights["bad user"]'),
    ({"queue": {"fairness": "random"}}, "queue.fairness"),
    # stats_prefix
    ({"queue": {"stats_prefix": ""}}, "queue.stats_prefix"),
    ({"queue": {"stats_prefix": "f{q}"}}, "queue.stats_prefix"),
    ({"queue": {"stats_prefix": "f q"}}, "queue.stats_prefix"),
    # worker ids
    ({"workers": [{"id": ""}]}, "workers[0].id"),
    ({"workers": [{"id": 7}]}, "workers[0].id"),
    ({"workers": [{"id": "w 1"}]}, "workers[0].id"),
    ({"workers": [{"id": "w{1}"}]}, "workers[0].id"),
    ({"workers": [{"id": POOL_PARTITION}]}, "workers[0].id"),
    # user ids in lists
    ({"workers": [{"id": "w", "assigned_users": [""]}]}, "workers[0].assigned_users[0]"),
    ({"workers": [{"id": "w", "assigned_users": ["a", "b c"]}]}, "workers[0].assigned_users[1]"),
    ({"workers": [{"id": "w", "assigned_users": ["a{b}"]}]}, "workers[0].assigned_users[0]"),
    ({"workers": [{"id": "w", "assigned_users": ["a\tb"]}]}, "workers[0].assigned_users[0]"),
    ({"workers": [{"id": "w", "assigned_users": ["a\x00b"]}]}, "workers[0].assigned_users[0]"),
    ({"workers": [{"id": "w", "assigned_users": ["a\u200bb"]}]}, "workers[0].assigned_users[0]"),
    ({"workers": [{"id": "w", "steal_targets": ["x" * 201]}]}, "workers[0].steal_targets[0]"),
    # duplicates inside one list
    ({"workers": [{"id": "w", "assigned_users": ["a", "b", "a"]}]}, "workers[0].assigned_users[2]"),
    ({"workers": [{"id": "w", "steal_targets": ["t:*", "t:*"]}]}, "workers[0].steal_targets[1]"),
    # same user assigned and stolen by one worker
    (
        {"workers": [{"id": "w", "assigned_users": ["a"], "steal_targets": ["b", "a"]}]},
        "workers[0].steal_targets[1]",
    ),
]


@pytest.mark.parametrize(("data", "key"), VALIDATION_CASES, ids=[k for _, k in VALIDATION_CASES])
def test_validation_error_names_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        FairQueueConfig.from_dict(data, environ={})
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_unknown_key_message_lists_allowed_and_suggests() -> None:
    message = config_error({"redis": {"prot": 1}})
    assert "did you mean 'port'" in message
    assert "allowed keys:" in message
    assert "socket_timeout" in message
    message = config_error({"workres": []})
    assert "did you mean 'workers'" in message


def test_duplicate_worker_ids_name_both_indexes() -> None:
    message = config_error({"workers": [{"id": "w1"}, {"id": "w2"}, {"id": "w1"}]})
    assert message.startswith("workers[2].id:")
    assert "workers[0]" in message
    assert "'w1'" in message


def test_user_assigned_to_two_workers_names_user_and_both_workers() -> None:
    message = config_error(
        {
            "workers": [
                {"id": "alpha", "assigned_users": ["u1", "u2"]},
                {"id": "beta", "assigned_users": ["u3", "u2"]},
            ]
        }
    )
    assert message.startswith("workers[1].assigned_users[1]:")
    assert "'u2'" in message
    assert "'alpha'" in message
    assert "'beta'" in message


def test_same_pattern_on_two_workers_is_allowed_first_wins() -> None:
    config = FairQueueConfig.from_dict(
        {
            "workers": [
                {"id": "w1", "assigned_users": ["t:*"]},
                {"id": "w2", "assigned_users": ["t:*"]},
            ]
        }
    )
    assert config.owner_of("t:1") == "w1"


def test_user_id_length_follows_queue_setting() -> None:
    long_user = "u" * 250
    data = {"workers": [{"id": "w", "assigned_users": [long_user]}], "queue": {"max_user_id_length": 300}}
    assert FairQueueConfig.from_dict(data).owner_of(long_user) == "w"
    message = config_error(
        {"workers": [{"id": "w", "assigned_users": ["abcdef"]}], "queue": {"max_user_id_length": 5}}
    )
    assert message.startswith("workers[0].assigned_users[0]:")


def test_current_worker_id_must_be_configured() -> None:
    with pytest.raises(UnknownWorkerError) as info:
        FairQueueConfig.from_dict({**two_workers(), "worker_id": "w3"})
    assert info.value.worker_id == "w3"
    assert info.value.known == ["w1", "w2"]
    with pytest.raises(UnknownWorkerError):
        FairQueueConfig.from_dict(two_workers(), worker_id="w3")
    # the keyword wins over the mapping's worker_id
    assert FairQueueConfig.from_dict({**two_workers(), "worker_id": "w1"}, worker_id="w2").worker.id == "w2"
    # without workers (a producer-only process) any valid id is accepted
    assert FairQueueConfig.from_dict({"worker_id": "web-1"}).worker_id == "web-1"


def test_data_must_be_a_mapping() -> None:
    with pytest.raises(ConfigurationError, match="mapping"):
        FairQueueConfig.from_dict(["redis"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="strings"):
        FairQueueConfig.from_dict({"redis": {1: 2}})


def test_null_sections_mean_defaults() -> None:
    config = FairQueueConfig.from_dict({"redis": None, "workers": None, "queue": None})
    assert config.redis == RedisConfig()
    assert config.workers == ()
    assert config.queue == QueueConfig()


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigurationError, match=r"^redis\.port:"):
        RedisConfig(port=70000)
    with pytest.raises(ConfigurationError, match=r"^queue\.batch_size:"):
        QueueConfig(batch_size=0)
    with pytest.raises(ConfigurationError, match=r"^worker\.max_concurrent_tasks:"):
        WorkerConfig(id="w", max_concurrent_tasks=0)
    with pytest.raises(ConfigurationError, match=r"^workers\[1\]\.id:"):
        FairQueueConfig(workers=(WorkerConfig(id="w"), WorkerConfig(id="w")))
    with pytest.raises(ConfigurationError, match=r"^workers\[0\]"):
        FairQueueConfig(workers=({"id": "w"},))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^redis:"):
        FairQueueConfig(redis={"host": "x"})  # type: ignore[arg-type]


def test_lists_are_normalised_to_tuples_and_ints_to_floats() -> None:
    worker = WorkerConfig(id="w", assigned_users=["a", "b"], poll_interval_seconds=2)  # type: ignore[arg-type]
    assert worker.assigned_users == ("a", "b")
    assert isinstance(worker.poll_interval_seconds, float)
    config = FairQueueConfig(workers=[worker])  # type: ignore[arg-type]
    assert isinstance(config.workers, tuple)


# --------------------------------------------------------------------------- workers


def test_worker_serves_assigned_and_may_steal() -> None:
    worker = WorkerConfig(id="w", assigned_users=("user:1", "tenant:*"), steal_targets=("user:?",))
    assert worker.serves_assigned("user:1")
    assert worker.serves_assigned("tenant:acme")
    assert not worker.serves_assigned("user:2")
    assert worker.may_steal("user:2")
    assert not worker.may_steal("user:22")
    assert not worker.may_steal("tenant:acme")
    assert worker.assigned_exact == frozenset({"user:1"})
    assert worker.assigned_patterns == ("tenant:*",)
    assert worker.steal_patterns == ("user:?",)


def test_get_worker_errors_list_configured_ids() -> None:
    config = FairQueueConfig.from_dict(two_workers())
    assert config.get_worker("w2").id == "w2"
    with pytest.raises(UnknownWorkerError) as info:
        config.get_worker("w9")
    assert "w9" in str(info.value)
    assert "w1, w2" in str(info.value)
    with pytest.raises(ConfigurationError) as no_id:
        config.get_worker()
    assert "no worker_id given and 2 workers configured" in str(no_id.value)
    assert "w1, w2" in str(no_id.value)
    with pytest.raises(ConfigurationError, match="no worker_id given"):
        _ = config.worker
    empty = FairQueueConfig()
    with pytest.raises(ConfigurationError, match="0 workers configured"):
        empty.get_worker()
    with pytest.raises(UnknownWorkerError, match="none configured"):
        empty.get_worker("w1")


def test_get_worker_defaults() -> None:
    one = FairQueueConfig.from_dict({"workers": [{"id": "solo"}]})
    assert one.worker.id == "solo"
    current = FairQueueConfig.from_dict(two_workers(), worker_id="w2")
    assert current.get_worker().id == "w2"
    assert current.get_worker("w1").id == "w1"


# --------------------------------------------------------------------------- ownership


def test_owner_of_exact_pattern_first_match_and_none() -> None:
    config = FairQueueConfig.from_dict(
        {
            "workers": [
                {"id": "w1", "assigned_users": ["user:1", "tenant:a*"]},
                {"id": "w2", "assigned_users": ["tenant:*", "tenant:acme"]},
                {"id": "w3", "assigned_users": ["tenant:?"]},
            ]
        }
    )
    assert config.owner_of("user:1") == "w1"
    # exact entries win over an earlier worker's pattern
    assert config.owner_of("tenant:acme") == "w2"
    # patterns: first match in worker order
    assert config.owner_of("tenant:abc") == "w1"
    assert config.owner_of("tenant:b") == "w2"
    assert config.owner_of("tenant:bcd") == "w2"
    assert config.owner_of("user:2") is None
    assert config.owner_of("x") is None
    assert config.partition_of("x") == POOL_PARTITION
    assert config.partition_of("tenant:b") == "w2"
    # repeated (memoised) lookups return the same answers
    assert [config.owner_of("tenant:abc") for _ in range(3)] == ["w1"] * 3


def test_owner_of_large_exact_lists() -> None:
    users_a = [f"user:{i}" for i in range(0, 100_000, 2)]
    users_b = [f"user:{i}" for i in range(1, 100_000, 2)]
    config = FairQueueConfig.from_dict(
        {
            "workers": [
                {"id": "even", "assigned_users": users_a},
                {"id": "odd", "assigned_users": [*users_b, "pat:*"]},
            ]
        }
    )
    assert config.owner_of("user:0") == "even"
    assert config.owner_of("user:99999") == "odd"
    assert config.owner_of("user:50000") == "even"
    assert config.owner_of("user:100000") is None
    assert config.owner_of("pat:x") == "odd"
    assert all(
        config.owner_of(f"user:{i}") == ("even" if i % 2 == 0 else "odd") for i in range(0, 100_000, 997)
    )
    assert config.get_worker("odd").serves_assigned("user:77777")
    assert not config.get_worker("even").serves_assigned("user:77777")


def test_steal_partitions_exact_targets() -> None:
    config = FairQueueConfig.from_dict(
        {
            "workers": [
                {"id": "w1", "assigned_users": ["a"], "steal_targets": ["c", "b", "nobody", "d"]},
                {"id": "w2", "assigned_users": ["b"]},
                {"id": "w3", "assigned_users": ["c", "d"]},
                {"id": "w4", "assigned_users": ["e"], "steal_targets": []},
                {"id": "w5", "assigned_users": ["t:*"], "steal_targets": ["t:5", "a"]},
            ]
        }
    )
    assert config.steal_partitions("w1") == ("w2", "w3", POOL_PARTITION)
    assert config.steal_partitions("w4") == ()
    # "t:5" is owned by w5 itself (pattern), so only w1 remains
    assert config.steal_partitions("w5") == ("w1",)
    # cached result is stable
    assert config.steal_partitions("w1") == ("w2", "w3", POOL_PARTITION)
    with pytest.raises(UnknownWorkerError):
        config.steal_partitions("w9")


def test_steal_partitions_with_pattern_is_everyone_else_plus_pool() -> None:
    config = FairQueueConfig.from_dict(
        {
            "workers": [
                {"id": "w1", "assigned_users": ["a"]},
                {"id": "w2", "assigned_users": ["b"], "steal_targets": ["x", "tenant:*"]},
                {"id": "w3", "assigned_users": ["c"]},
            ]
        },
        worker_id="w2",
    )
    assert config.steal_partitions("w2") == ("w1", "w3", POOL_PARTITION)
    assert config.steal_partitions() == ("w1", "w3", POOL_PARTITION)


def test_steal_partitions_only_unowned_targets_is_pool() -> None:
    config = FairQueueConfig.create_default(assigned_users=["a"], steal_targets=["z"])
    assert config.steal_partitions("worker-001") == (POOL_PARTITION,)


def test_weight_of() -> None:
    config = FairQueueConfig.from_dict({"queue": {"user_weights": {"vip": 5, "slow": 0.5}}})
    assert config.weight_of("vip") == 5.0
    assert config.weight_of("slow") == 0.5
    assert config.weight_of("other") == 1.0


# --------------------------------------------------------------------------- round trips, immutability


def full_config() -> FairQueueConfig:
    return FairQueueConfig.from_dict(
        {
            "redis": {
                "host": "h",
                "port": 6390,
                "db": 5,
                "password": "p$${x}",
                "username": "u",
                "ssl": True,
                "socket_timeout": 2,
                "max_connections": 50,
            },
            "workers": [
                {
                    "id": "w1",
                    "assigned_users": ["a", "t:*"],
                    "steal_targets": ["b"],
                    "poll_interval_seconds": 0.25,
                    "task_timeout_seconds": 60,
                },
                {"id": "w2", "assigned_users": ["b"], "steal_targets": ["*"], "max_concurrent_tasks": 3},
            ],
            "queue": {
                "stats_prefix": "app",
                "user_weights": {"a": 2, "b": 0.5},
                "fairness": "time",
                "batch_size": 10,
            },
            "worker_id": "w2",
        },
        environ={},
    )


def test_to_dict_round_trip() -> None:
    config = full_config()
    assert config.redis.password == "p${x}"
    data = config.to_dict()
    assert data["workers"][0]["assigned_users"] == ["a", "t:*"]
    assert data["queue"]["user_weights"] == {"a": 2.0, "b": 0.5}
    assert data["worker_id"] == "w2"
    assert not any(k.startswith("_") for k in data["workers"][0])
    again = FairQueueConfig.from_dict(data, environ={})
    assert again == config
    assert again.to_dict() == data
    # a default config round-trips too
    plain = FairQueueConfig.create_default()
    assert FairQueueConfig.from_dict(plain.to_dict()) == plain


def test_to_dict_is_plain_data(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "dumped.yaml"
    path.write_text(yaml.safe_dump(full_config().to_dict()), encoding="utf-8")
    assert FairQueueConfig.from_yaml(path, environ={}) == full_config()


def test_frozen_everywhere() -> None:
    config = full_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.worker_id = "w1"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.redis.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers[0].assigned_users = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.queue.batch_size = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.queue.user_weights["a"] = 100.0  # type: ignore[index]
    assert isinstance(config.workers, tuple)
    assert isinstance(config.workers[0].assigned_users, tuple)


def test_weights_are_copied_not_aliased() -> None:
    weights = {"a": 2.0}
    queue = QueueConfig(user_weights=weights)
    weights["a"] = 9.0
    assert queue.user_weights["a"] == 2.0


def test_equality_hash_copy() -> None:
    config = full_config()
    assert config == full_config()
    assert hash(config) == hash(full_config())
    assert {config.redis: 1}[full_config().redis] == 1
    # copy goes through __reduce__, the same path pickling (e.g. multiprocessing) would use
    for clone in (copy.deepcopy(config), copy.copy(config)):
        assert clone == config
        assert clone.owner_of("t:zz") == "w1"
        assert clone.steal_partitions() == ("w1", POOL_PARTITION)
    changed = dataclasses.replace(config, worker_id="w1")
    assert changed.worker.id == "w1"
    assert changed != config


def test_replace_revalidates() -> None:
    with pytest.raises(ConfigurationError, match=r"redis\.port"):
        dataclasses.replace(RedisConfig(), port=-1)


# --------------------------------------------------------------------------- the schema


@pytest.mark.parametrize(("section", "cls"), [(REDIS, RedisConfig), (WORKER, WorkerConfig), (QUEUE, QueueConfig)],
                         ids=["redis", "workers", "queue"])
def test_schema_declares_every_dataclass_field_with_its_default(section: Section, cls: type[Any]) -> None:
    fields = [f for f in dataclasses.fields(cls) if f.init]
    assert [f.name for f in fields] == list(section.names)
    for f in fields:
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            assert section[f.name].required
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            assert default == section[f.name].default, f.name


def test_every_schema_field_is_in_settings_md_with_its_default() -> None:
    """docs/settings.md cannot drift from the schema: each table lists exactly its section's keys."""
    docs = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    headings = {"FAIRQUE": "## Django-level keys", "redis": "## `redis`", "workers": "## `workers`",
                "queue": "## `queue`"}
    assert set(headings) == {s.name for s in SECTIONS}
    for section in SECTIONS:
        text = docs.split(headings[section.name], 1)[1].split("\n## ", 1)[0]
        rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|", text, flags=re.MULTILINE))
        assert list(rows) == [r for r in rows if r in section], f"{section.name}: keys the schema lacks"
        for spec in section.fields:
            assert spec.name in rows, f"{section.name}.{spec.name} is not in docs/settings.md"
            assert rows[spec.name].strip("`") == doc_default(spec), (section.name, spec.name, rows[spec.name])


def test_from_dict_reports_every_problem() -> None:
    data = {"workers": [{"id": "w1", "poll_interval_seconds": 0, "assigned_users": ["u"]},
                        {"id": "w1", "assigned_users": ["u"]}, {"id": "w2", "assigned_users": ["u"]}],
            "queue": {"fairness": "lottery"}}
    with pytest.raises(ConfigurationError) as info:
        FairQueueConfig.from_dict(data, environ={})
    assert str(info.value).startswith("workers[0].poll_interval_seconds: must be > 0")
    problems = problems_of(info.value)
    assert [(p.key, p.code) for p in problems] == [
        ("workers[0].poll_interval_seconds", "invalid"),
        ("queue.fairness", "invalid"),
        ("workers[1].id", "duplicate_worker_id"),
        ("workers[2].assigned_users[0]", "double_assignment"),
    ]
    assert problems[2].places == ("workers[0]", "workers[1]")
    assert problems[3].subject == "u" and problems[3].places == ("w1", "w2")
    config, listed = collect(data, environ={})
    assert config is None and listed == list(problems)
    assert collect({"workers": [{"id": "w"}]}, environ={})[1] == []


@pytest.mark.parametrize("user", ["~reserved", "a\u200bb", "a b", "{x}"])
def test_config_user_ids_follow_the_push_rules(user: str) -> None:
    """One set of user-id rules: what a push refuses, the configuration refuses too."""
    with pytest.raises(TaskValidationError):
        validate_user_id(user)
    assert "workers[0].assigned_users[0]" in config_error({"workers": [{"id": "w", "assigned_users": [user]}]})
    assert "queue.user_weights" in config_error({"queue": {"user_weights": {user: 1}}})


def test_orphan_watch_partitions_and_their_servers() -> None:
    """Orphan takeover watches every partition a worker does not serve itself: each worker's own
    (served by its owner) and the pool (served by the workers that may steal from it)."""
    workers = [
        {"id": "w1", "assigned_users": ["a"], "steal_targets": ["nobody"]},
        {"id": "w2", "assigned_users": ["b"], "steal_targets": ["x:*"]},
        {"id": "w3", "assigned_users": ["c"]},
    ]
    config = FairQueueConfig.from_dict({"workers": workers})
    assert config.queue.orphan_takeover is True and config.queue.orphan_after_seconds is None
    assert config.partition_servers() == {"w1": ("w1",), "w2": ("w2",), "w3": ("w3",), POOL_PARTITION: ("w1", "w2")}
    assert config.orphan_watch("w3") == (("w1", ("w1",)), ("w2", ("w2",)), (POOL_PARTITION, ("w1", "w2")))
    assert config.orphan_watch("w1") == (("w2", ("w2",)), ("w3", ("w3",)))  # it serves the pool itself
    off = FairQueueConfig.from_dict({"workers": workers, "queue": {"orphan_takeover": False}})
    assert off.orphan_watch("w3") == ()
    # nobody may steal from the pool: nothing is ever queued there, nothing to watch
    alone = FairQueueConfig.from_dict({"workers": [{"id": "w1", "assigned_users": ["a"]},
                                                   {"id": "w2", "assigned_users": ["b"]}]})
    assert alone.partition_servers() == {"w1": ("w1",), "w2": ("w2",)}
    with pytest.raises(ConfigurationError, match="orphan_after_seconds"):
        FairQueueConfig.from_dict({"queue": {"orphan_after_seconds": 0}})
