"""The FAIRQUE setting: dict, YAML file, cache aliases, override_settings, errors, shared client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from fairque_django import conf
from fairque_django.conf import (
    FairQueueImproperlyConfigured,
    get_config,
    get_queue,
    get_redis_client,
    get_setting,
)
from fairque_django.core.config import FairQueueConfig, RedisConfig
from fairque_django.core.connection import get_client
from fairque_django.core.errors import ConfigurationError
from fairque_django.core.models import Task
from fairque_django.core.queue import TaskQueue
from tests.support.redis_url import REDIS_URL

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
WORKERS = [{"id": "w1", "assigned_users": ["user:*"]}]


pytestmark = pytest.mark.usefixtures("redis_client")


def roundtrip(queue: TaskQueue, user: str = "user:1") -> None:
    task = Task.create(payload={"n": 1})
    assert queue.push(task, user_id=user)["success"]
    popped = queue.pop()
    assert popped is not None and popped.task_id == task.task_id and popped.user_id == user
    queue.complete(popped)


# --------------------------------------------------------------------------- dict / yaml


def test_dict_setting_from_test_settings() -> None:
    config = get_config()
    assert config.worker_ids == ("worker-001", "worker-002")
    assert config.redis.url == REDIS_URL
    assert config.queue.lease_timeout_seconds == 5
    assert config.get_worker("worker-002").assigned_users == ("user:4", "user:5")
    assert get_config() is config  # cached


def test_django_options_defaults() -> None:
    assert get_setting("CACHE_ALIAS") is None
    assert get_setting("TENANT_RESOLVER") == "fairque_django.tenancy.default_resolver"
    assert get_setting("HANDLER") is None
    assert get_setting("ENQUEUE_ON_COMMIT") is False
    assert get_setting("WORKER_ID") is None
    with pytest.raises(KeyError, match="NOPE"):
        get_setting("NOPE")


YAML = f"""
redis:
  url: "{REDIS_URL}"
workers:
  - id: "yaml-1"
    assigned_users: ["user:1", "user:3"]
    steal_targets: ["user:2"]
  - id: "yaml-2"
    assigned_users: ["user:2"]
queue:
  stats_prefix: "fqyaml"
"""


def test_config_file_absolute(tmp_path: Path) -> None:
    path = tmp_path / "fairque_config.yaml"
    path.write_text(YAML)
    with override_settings(FAIRQUE={"CONFIG_FILE": str(path), "ENQUEUE_ON_COMMIT": True}):
        config = get_config()
        assert config.worker_ids == ("yaml-1", "yaml-2")
        assert config.queue.stats_prefix == "fqyaml"
        assert get_setting("ENQUEUE_ON_COMMIT") is True
        roundtrip(get_queue("yaml-1"), "user:3")


def test_config_file_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "fq.yaml").write_text(YAML)
    with override_settings(BASE_DIR=tmp_path, FAIRQUE={"CONFIG_FILE": "conf/fq.yaml"}):
        assert get_config().worker_ids == ("yaml-1", "yaml-2")


def test_config_file_relative_to_cwd_without_base_dir(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fq.yaml").write_text(YAML)
    monkeypatch.chdir(tmp_path)
    with override_settings(FAIRQUE={"CONFIG_FILE": "fq.yaml"}):
        assert get_config().queue.stats_prefix == "fqyaml"


def test_config_file_with_worker_id(tmp_path: Path) -> None:
    (tmp_path / "fq.yaml").write_text(YAML)
    with override_settings(FAIRQUE={"CONFIG_FILE": tmp_path / "fq.yaml", "WORKER_ID": "yaml-2"}):
        assert get_config().worker_id == "yaml-2"
        assert get_queue().proto.worker_id == "yaml-2"


def test_config_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("workers:\n  - id: w1\n    poll_interval_seconds: 0\n")
    with override_settings(FAIRQUE={"CONFIG_FILE": str(path)}), \
            pytest.raises(FairQueueImproperlyConfigured) as info:
        get_config()
    assert "workers[0].poll_interval_seconds" in str(info.value)
    assert str(path) in str(info.value)
    with override_settings(FAIRQUE={"CONFIG_FILE": str(tmp_path / "missing.yaml")}), \
            pytest.raises(FairQueueImproperlyConfigured, match="does not exist"):
        get_config()


# --------------------------------------------------------------------------- connection


def test_url_config_uses_the_core_shared_client() -> None:
    client = get_redis_client()
    assert client is get_redis_client()
    assert client is get_client(get_config().redis)
    queue = get_queue()
    assert queue is get_queue() and queue.client is client
    worker2 = get_queue("worker-002")
    assert worker2 is not queue and worker2.client is client
    assert worker2.proto.worker_id == "worker-002"
    roundtrip(get_queue("worker-001"))


def test_django_redis_cache_alias() -> None:
    from django_redis import get_redis_connection  # type: ignore[import-untyped]

    caches = {"default": LOCMEM, "fq": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
    with override_settings(CACHES=caches, FAIRQUE={"CACHE_ALIAS": "fq", "workers": WORKERS}):
        client = get_redis_client()
        assert client is get_redis_connection("fq", write=True)
        assert client is get_redis_client()
        # without a redis section the cache's LOCATION is the config's redis
        assert get_config().redis == RedisConfig(url=REDIS_URL)
        assert get_queue().client is client
        # TaskQueue(config) and README-style create_default() configs share Django's client
        assert TaskQueue(get_config()).client is client
        readme = FairQueueConfig.create_default(worker_id="w1", assigned_users=["user:1"])
        assert readme.redis == get_config().redis
        assert TaskQueue(readme).client is client
        roundtrip(get_queue())


def test_builtin_redis_cache_alias() -> None:
    from django.core.cache import caches as django_caches

    caches = {"default": LOCMEM,
              "fq": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    with override_settings(CACHES=caches, FAIRQUE={"CACHE_ALIAS": "fq", "workers": WORKERS}):
        client = get_redis_client()
        assert isinstance(client, redis.Redis)
        assert client is get_redis_client()
        assert client.connection_pool.connection_kwargs["db"] == int(REDIS_URL.rsplit("/", 1)[1])
        # the same pool the cache itself writes through
        django_caches["fq"].set("fairque-probe", 1)
        assert client.exists(django_caches["fq"].make_key("fairque-probe")) == 1
        assert TaskQueue(get_config()).client is client
        roundtrip(get_queue())


def test_cache_alias_with_explicit_redis_section_still_uses_the_cache_client() -> None:
    from django_redis import get_redis_connection

    caches = {"default": LOCMEM, "fq": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
    fairque = {"CACHE_ALIAS": "fq", "redis": {"url": REDIS_URL, "socket_timeout": 3}, "workers": WORKERS}
    with override_settings(CACHES=caches, FAIRQUE=fairque):
        assert get_config().redis.socket_timeout == 3
        assert get_redis_client() is get_redis_connection("fq", write=True)


def test_cache_alias_errors() -> None:
    with override_settings(FAIRQUE={"CACHE_ALIAS": "nope", "workers": WORKERS}), \
            pytest.raises(FairQueueImproperlyConfigured, match=r"CACHE_ALIAS.*no cache named 'nope'"):
        get_redis_client()
    with override_settings(CACHES={"default": LOCMEM}, FAIRQUE={"CACHE_ALIAS": "default"}), \
            pytest.raises(FairQueueImproperlyConfigured, match=r"CACHE_ALIAS.*not a Redis cache"):
        get_redis_client()


def test_client_provider_ignores_other_configs() -> None:
    other = RedisConfig(url=REDIS_URL.rsplit("/", 1)[0] + "/14")
    assert conf.django_client_provider(other) is None
    # without CACHE_ALIAS the core's per-config client already is the shared one
    assert conf.django_client_provider(get_config().redis) is None


def test_create_default_uses_fairque_redis() -> None:
    assert FairQueueConfig.create_default().redis == get_config().redis
    with override_settings(FAIRQUE={"redis": {"url": REDIS_URL, "socket_timeout": 2}}):
        assert FairQueueConfig.create_default().redis.socket_timeout == 2


# --------------------------------------------------------------------------- override_settings


def test_override_settings_takes_effect() -> None:
    before = get_config()
    queue_before = get_queue()
    fairque = {"redis": {"url": REDIS_URL}, "workers": WORKERS, "queue": {"stats_prefix": "other"},
               "ENQUEUE_ON_COMMIT": True}
    with override_settings(FAIRQUE=fairque):
        assert get_config().queue.stats_prefix == "other"
        assert get_config().worker_ids == ("w1",)
        assert get_setting("ENQUEUE_ON_COMMIT") is True
        assert get_queue() is not queue_before
        assert get_queue().keys.prefix == "other"
    assert get_config() == before
    assert get_config().queue.stats_prefix == "fq"
    assert get_setting("ENQUEUE_ON_COMMIT") is False


def test_missing_fairque_gives_default_config() -> None:
    with override_settings(FAIRQUE=None):
        config = get_config()
        assert config.worker_ids == ("worker-001",)
        assert config.redis == RedisConfig()  # localhost:6379/0
        assert config.owner_of("tenant:anything") == "worker-001"
        assert get_setting("CACHE_ALIAS") is None


def test_deleted_fairque_gives_default_config() -> None:
    from django.conf import settings

    with override_settings():
        del settings.FAIRQUE
        conf.reset()  # deleting a setting sends no setting_changed
        assert get_config().worker_ids == ("worker-001",)
    conf.reset()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fairque", "pattern"),
    [
        ({"CACHE_ALIASES": "x"}, r"FAIRQUE\['CACHE_ALIASES'\].*did you mean 'CACHE_ALIAS'"),
        ({"BOGUS": 1}, r"FAIRQUE\['BOGUS'\]: unknown key"),
        ({"cache_alias": "x"}, r"did you mean 'CACHE_ALIAS'"),
        ({"ENQUEUE_ON_COMMIT": "yes"}, r"FAIRQUE\['ENQUEUE_ON_COMMIT'\]: must be True or False"),
        ({"TENANT_RESOLVER": 3}, r"FAIRQUE\['TENANT_RESOLVER'\]"),
        ({"HANDLER": 3}, r"FAIRQUE\['HANDLER'\]"),
        ({"CACHE_ALIAS": ""}, r"FAIRQUE\['CACHE_ALIAS'\]"),
        ({"CONFIG_FILE": "x.yaml", "workers": WORKERS}, r"FAIRQUE\['CONFIG_FILE'\]: give either"),
        ({"workers": [{"id": "w1", "poll_interval_seconds": 0}]}, r"^workers\[0\]\.poll_interval_seconds"),
        ({"workers": [{"id": "w1"}, {"id": "w1"}]}, r"workers\[1\]\.id: duplicate worker id 'w1'"),
        ({"workers": [{"id": "a", "assigned_users": ["u"]}, {"id": "b", "assigned_users": ["u"]}]},
         r"user 'u' is assigned to both worker 'a'"),
        ({"redis": {"port": 0}}, r"redis\.port"),
        ({"queue": {"stats_prefx": "x"}}, r"queue\.stats_prefx: unknown key.*did you mean 'stats_prefix'"),
        ({"wokers": []}, r"wokers: unknown key"),
        ({"workers": WORKERS, "WORKER_ID": "w9"}, r"FAIRQUE\['WORKER_ID'\]: unknown worker id 'w9'"),
    ],
)
def test_bad_settings_raise_naming_the_key(fairque: dict[str, Any], pattern: str) -> None:
    with override_settings(FAIRQUE=fairque), \
            pytest.raises(FairQueueImproperlyConfigured, match=pattern) as info:
        get_config()
    assert isinstance(info.value, ImproperlyConfigured)
    assert isinstance(info.value, ConfigurationError)
    assert info.value.key


def test_fairque_must_be_a_dict() -> None:
    with override_settings(FAIRQUE=["redis"]), pytest.raises(FairQueueImproperlyConfigured, match="FAIRQUE"):
        get_config()


def test_unknown_worker_for_get_queue() -> None:
    with pytest.raises(FairQueueImproperlyConfigured, match="unknown worker id 'w9'"):
        get_queue("w9")


def test_error_does_not_stick_after_override() -> None:
    with override_settings(FAIRQUE={"BOGUS": 1}), pytest.raises(FairQueueImproperlyConfigured):
        get_config()
    assert get_config().worker_ids == ("worker-001", "worker-002")


def test_redis_display_url_hides_password() -> None:
    client = redis.Redis.from_url("redis://alice:s3cret@example.invalid:6390/3")
    from fairque_django.caches import redis_display_url

    shown = redis_display_url(client)
    assert shown == "redis://alice@example.invalid:6390/3"
    assert "s3cret" not in shown
