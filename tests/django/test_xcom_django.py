"""XCom outside tasks in a Django project: the configured queue, scoped to the current tenant."""

from __future__ import annotations

import pytest

import fairque_django
from fairque_django import MissingTenantError, tenant, xcom_delete, xcom_pull, xcom_push
from fairque_django.conf import get_config
from tests.support import running_worker
from tests.testapp import tasks as t

pytestmark = pytest.mark.usefixtures("redis_client")


def test_xcom_in_a_tenant_uses_the_configured_queue() -> None:
    with tenant("user:1"):
        xcom_push("report", {"rows": 3})
        assert xcom_pull("report") == {"rows": 3}
    with tenant("user:2"):
        assert xcom_pull("report", default="none") == "none"  # another tenant's value is invisible
    assert xcom_pull("report", user_id="user:1") == {"rows": 3}
    assert xcom_delete("report", user_id="user:1") is True
    assert xcom_pull("report", default="gone", user_id="user:1") == "gone"


def test_xcom_without_a_tenant_raises_missing_tenant() -> None:
    with pytest.raises(MissingTenantError):
        xcom_push("k", 1)
    with pytest.raises(MissingTenantError):
        xcom_pull("k")


def test_a_task_reads_what_the_web_side_pushed_for_its_tenant(redis_client: object) -> None:
    with tenant("user:3"):
        xcom_push("greeting", "hello")
        handle = t.xcom_read.enqueue("greeting")
    with running_worker(get_config(), "worker-001"):
        handle.wait(timeout=10)
    assert t.log_client().lrange(t.LOG, 0, -1) == [b"user:3|hello"]
    assert fairque_django.result(handle.id, user="user:3").status == "SUCCESSFUL"
