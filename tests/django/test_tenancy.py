"""Tenant resolution, the tenant() context manager and FairQueueTenantMiddleware."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import AnonymousUser, Group, User
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.urls import path

from fairque_django import conf
from fairque_django.core.context import task_running
from fairque_django.core.errors import MissingTenantError, TaskValidationError
from fairque_django.core.models import Task
from fairque_django.middleware import FairQueueTenantMiddleware
from fairque_django.tenancy import (
    current_tenant,
    default_resolver,
    resolve_user_id,
    resolve_user_id_or_none,
    tenant,
)

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "fairque_django.middleware.FairQueueTenantMiddleware",
]


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    conf.install_providers()  # another test module may have replaced the core hooks
    conf.reset()
    yield
    conf.reset()


# --------------------------------------------------------------------------- helpers


class Org:
    """Not a model: names its tenant with an attribute."""

    def __init__(self, slug: str) -> None:
        self.fairque_user_id = f"tenant:{slug}"


class WithMethod:
    def fairque_user_id(self) -> str:
        return "tenant:method"


class WithProperty:
    @property
    def fairque_user_id(self) -> str:
        return "tenant:property"


def prefixing_resolver(obj: Any) -> str | None:
    if isinstance(obj, str):
        return obj if ":" in obj else f"tenant:{obj}"
    return default_resolver(obj)


# --------------------------------------------------------------------------- resolver


def test_strings_are_user_ids() -> None:
    assert resolve_user_id("user:1") == "user:1"
    assert resolve_user_id("tenant:acme") == "tenant:acme"


@pytest.mark.parametrize("bad", ["", "has space", "{tag}", "tab\there", "x" * 201])
def test_bad_ids_are_rejected(bad: str) -> None:
    with pytest.raises(TaskValidationError):
        resolve_user_id(bad)


@pytest.mark.parametrize("bad", [42, 4.2, b"user:1", ["user:1"], object()])
def test_unresolvable_objects_are_rejected(bad: object) -> None:
    with pytest.raises(TaskValidationError, match="cannot resolve"):
        resolve_user_id(bad)


def test_max_length_follows_the_config() -> None:
    long_id = "u" * 250
    fairque = {"workers": [{"id": "w1"}], "queue": {"max_user_id_length": 300}}
    with override_settings(FAIRQUE=fairque):
        assert resolve_user_id(long_id) == long_id


@pytest.mark.django_db
def test_user_instance() -> None:
    user = User.objects.create_user("alice")
    assert resolve_user_id(user) == f"user:{user.pk}"


def test_unsaved_model_is_rejected() -> None:
    with pytest.raises(TaskValidationError, match="unsaved"):
        resolve_user_id(User(username="ghost"))


@pytest.mark.django_db
def test_other_model_instance_uses_model_name() -> None:
    group = Group.objects.create(name="acme")
    assert resolve_user_id(group) == f"group:{group.pk}"


def test_fairque_user_id_attribute_method_and_property() -> None:
    assert resolve_user_id(Org("acme")) == "tenant:acme"
    assert resolve_user_id(WithMethod()) == "tenant:method"
    assert resolve_user_id(WithProperty()) == "tenant:property"


def test_fairque_user_id_is_validated() -> None:
    org = Org("acme")
    org.fairque_user_id = "bad id"
    with pytest.raises(TaskValidationError):
        resolve_user_id(org)
    org.fairque_user_id = 7  # type: ignore[assignment]
    with pytest.raises(TaskValidationError, match="must be a string"):
        resolve_user_id(org)


@pytest.mark.django_db
def test_request() -> None:
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    assert resolve_user_id_or_none(request) is None
    with pytest.raises(MissingTenantError):
        resolve_user_id(request)
    user = User.objects.create_user("bob")
    request.user = user
    assert resolve_user_id(request) == f"user:{user.pk}"
    group = Group.objects.create(name="tenant-model")
    request.tenant = group  # type: ignore[attr-defined]  # django-tenants style wins over the user
    assert resolve_user_id(request) == f"group:{group.pk}"


def test_request_without_user_attribute() -> None:
    assert resolve_user_id_or_none(RequestFactory().get("/")) is None


def test_anonymous_user_names_no_tenant() -> None:
    assert resolve_user_id_or_none(AnonymousUser()) is None


def test_custom_resolver_setting() -> None:
    fairque = {"workers": [{"id": "w1"}], "TENANT_RESOLVER": "tests.django.test_tenancy.prefixing_resolver"}
    with override_settings(FAIRQUE=fairque):
        assert resolve_user_id("acme") == "tenant:acme"
        assert resolve_user_id("user:1") == "user:1"
        with tenant("acme"):
            assert current_tenant() == "tenant:acme"


def test_custom_resolver_result_is_validated() -> None:
    fairque = {"workers": [{"id": "w1"}], "TENANT_RESOLVER": lambda obj: "not valid"}
    with override_settings(FAIRQUE=fairque), pytest.raises(TaskValidationError):
        resolve_user_id("x")


# --------------------------------------------------------------------------- tenant()


def test_tenant_context_manager_nests_and_resets() -> None:
    assert current_tenant() is None
    with tenant("tenant:a") as outer:
        assert outer == "tenant:a"
        assert current_tenant() == "tenant:a"
        with tenant(Org("b")) as inner:
            assert inner == "tenant:b"
            assert current_tenant() == "tenant:b"
            with tenant(None):
                assert current_tenant() is None
            assert current_tenant() == "tenant:b"
        assert current_tenant() == "tenant:a"
    assert current_tenant() is None


def test_tenant_resets_on_error() -> None:
    with pytest.raises(RuntimeError), tenant("tenant:a"):
        raise RuntimeError("boom")
    assert current_tenant() is None


def test_tenant_rejects_bad_ids_without_changing_the_tenant() -> None:
    with tenant("tenant:a"):
        with pytest.raises(TaskValidationError), tenant("bad id"):
            pass
        assert current_tenant() == "tenant:a"


def test_running_task_user_is_the_current_tenant() -> None:
    task = Task.create(user_id="user:9", payload={})
    with tenant("tenant:a"), task_running(task, None):
        assert current_tenant() == "user:9"


def test_fairque_tenant_is_exported() -> None:
    from fairque_django import tenancy

    assert tenancy.tenant is tenant


# --------------------------------------------------------------------------- middleware


seen: list[str | None] = []


def record_view(request: HttpRequest) -> HttpResponse:
    seen.append(current_tenant())
    return HttpResponse(current_tenant() or "-")


async def async_record_view(request: HttpRequest) -> HttpResponse:
    seen.append(current_tenant())
    return HttpResponse(current_tenant() or "-")


def failing_view(request: HttpRequest) -> HttpResponse:
    seen.append(current_tenant())
    raise RuntimeError("view failed")


urlpatterns = [
    path("sync/", record_view),
    path("async/", async_record_view),
    path("fail/", failing_view),
]


@pytest.fixture
def clear_seen() -> Iterator[list[str | None]]:
    seen.clear()
    yield seen
    seen.clear()


def test_middleware_sets_and_resets(clear_seen: list[str | None]) -> None:
    middleware = FairQueueTenantMiddleware(record_view)
    request = RequestFactory().get("/")
    request.fairque_user_id = "tenant:acme"  # type: ignore[attr-defined]
    response = middleware(request)
    assert response.content == b"tenant:acme"
    assert clear_seen == ["tenant:acme"]
    assert current_tenant() is None


def test_middleware_anonymous_request(clear_seen: list[str | None]) -> None:
    middleware = FairQueueTenantMiddleware(record_view)
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    with tenant("tenant:outer"):
        middleware(request)
        assert current_tenant() == "tenant:outer"
    assert clear_seen == [None]  # the request had no tenant, the outer one does not leak in


def test_middleware_resets_after_an_exception(clear_seen: list[str | None]) -> None:
    middleware = FairQueueTenantMiddleware(failing_view)
    request = RequestFactory().get("/")
    request.fairque_user_id = "tenant:acme"  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        middleware(request)
    assert clear_seen == ["tenant:acme"]
    assert current_tenant() is None


def test_middleware_async(clear_seen: list[str | None]) -> None:
    async def get_response(request: HttpRequest) -> HttpResponse:
        return await async_record_view(request)

    middleware = FairQueueTenantMiddleware(get_response)
    from asgiref.sync import iscoroutinefunction

    assert iscoroutinefunction(middleware)
    request = RequestFactory().get("/")
    request.fairque_user_id = "tenant:async"  # type: ignore[attr-defined]
    response = async_to_sync(middleware)(request)
    assert response.content == b"tenant:async"
    assert clear_seen == ["tenant:async"]
    assert current_tenant() is None


def test_middleware_is_not_async_for_sync_stacks() -> None:
    from asgiref.sync import iscoroutinefunction

    assert not iscoroutinefunction(FairQueueTenantMiddleware(record_view))


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="tests.django.test_tenancy", MIDDLEWARE=MIDDLEWARE)
def test_middleware_in_a_real_stack(clear_seen: list[str | None]) -> None:
    user = User.objects.create_user("carol")
    client = Client()
    assert client.get("/sync/").content == b"-"
    client.force_login(user)
    assert client.get("/sync/").content == f"user:{user.pk}".encode()
    assert clear_seen == [None, f"user:{user.pk}"]
    assert current_tenant() is None


@pytest.mark.django_db(transaction=True)
@override_settings(ROOT_URLCONF="tests.django.test_tenancy", MIDDLEWARE=MIDDLEWARE)
def test_middleware_in_a_real_async_stack(clear_seen: list[str | None]) -> None:
    user = User.objects.create_user("dave")

    async def run() -> tuple[bytes, bytes]:
        client = AsyncClient()
        anonymous = (await client.get("/async/")).content
        await client.aforce_login(user)
        return anonymous, (await client.get("/async/")).content

    anonymous, logged_in = async_to_sync(run)()
    assert anonymous == b"-"
    assert logged_in == f"user:{user.pk}".encode()
    assert current_tenant() is None
