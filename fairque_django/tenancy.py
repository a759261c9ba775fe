"""Map Django objects (users, tenant models, requests) to FairQueue user ids.

The resolver is ``FAIRQUE["TENANT_RESOLVER"]`` (default :func:`default_resolver`).  A
resolver takes any object and returns a user id string, or ``None`` when the object names no
tenant (an anonymous request); every id is checked with
:func:`fairque_django.core.keys.validate_user_id`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model
from django.http import HttpRequest

from .core.config import DEFAULT_MAX_USER_ID_LENGTH
from .core.context import current_user, use_tenant
from .core.errors import MissingTenantError, TaskValidationError
from .core.keys import validate_user_id

__all__ = [
    "current_tenant",
    "default_resolver",
    "get_resolver",
    "resolve_user_id",
    "resolve_user_id_or_none",
    "tenant",
]

Resolver = Callable[[Any], "str | None"]

_resolver_cache: dict[object, Resolver] = {}


def _max_length() -> int:
    from .conf import get_config

    try:
        return get_config().queue.max_user_id_length
    except ImproperlyConfigured:
        return DEFAULT_MAX_USER_ID_LENGTH


def _model_user_id(obj: Model) -> str:
    from django.contrib.auth.base_user import AbstractBaseUser

    if obj.pk is None:
        raise TaskValidationError(
            f"cannot use an unsaved {type(obj).__name__} as a tenant: it has no primary key yet"
        )
    if isinstance(obj, AbstractBaseUser):
        return f"user:{obj.pk}"
    return f"{obj._meta.model_name}:{obj.pk}"


def _request_user_id(request: HttpRequest) -> str | None:
    tenant_obj = getattr(request, "tenant", None)  # django-tenants and similar
    if tenant_obj is not None:
        return default_resolver(tenant_obj)
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return default_resolver(user)
    return None


def default_resolver(obj: Any) -> str | None:
    """The default tenant resolver.

    - a ``str`` is the user id itself;
    - an object with a ``fairque_user_id`` attribute, property or method: its value;
    - an auth user (``AbstractBaseUser``): ``"user:<pk>"``; an anonymous user: ``None``;
    - any other model instance: ``"<model_name>:<pk>"``, e.g. ``"organization:7"``;
    - an ``HttpRequest``: its ``tenant`` (django-tenants style), else its authenticated
      ``user``, else ``None``.
    """
    if isinstance(obj, str):
        return obj
    if obj is None:
        return None
    custom = getattr(obj, "fairque_user_id", None)
    if custom is not None:
        value = custom() if callable(custom) else custom
        if value is None or isinstance(value, str):
            return value
        raise TaskValidationError(
            f"{type(obj).__name__}.fairque_user_id must be a string or None, not {type(value).__name__}"
        )
    if isinstance(obj, HttpRequest):
        return _request_user_id(obj)
    if isinstance(obj, Model):
        return _model_user_id(obj)
    if getattr(obj, "is_anonymous", False) is True:  # AnonymousUser is not a model
        return None
    raise TaskValidationError(
        f"cannot resolve a FairQueue user id from {type(obj).__name__} {obj!r}: pass a string, a "
        "model instance, a request or an object with a fairque_user_id attribute"
    )


def get_resolver() -> Resolver:
    """The configured ``TENANT_RESOLVER`` (imported once per setting value)."""
    from django.utils.module_loading import import_string

    from .conf import FairQueueImproperlyConfigured, get_setting

    path = get_setting("TENANT_RESOLVER")
    if callable(path):
        return path  # type: ignore[no-any-return]
    resolver = _resolver_cache.get(path)
    if resolver is None:
        try:
            resolver = import_string(path)
        except ImportError as exc:
            raise FairQueueImproperlyConfigured(
                f"cannot import {path!r}: {exc}", "FAIRQUE['TENANT_RESOLVER']"
            ) from exc
        if not callable(resolver):
            raise FairQueueImproperlyConfigured(f"{path!r} is not callable", "FAIRQUE['TENANT_RESOLVER']")
        _resolver_cache[path] = resolver
    return resolver


def resolve_user_id_or_none(obj: Any) -> str | None:
    """The validated user id of *obj* according to the resolver, or ``None`` if it has none."""
    value = get_resolver()(obj)
    if value is None:
        return None
    return validate_user_id(value, _max_length())


def resolve_user_id(obj: Any) -> str:
    """The validated user id of *obj*; raises :class:`MissingTenantError` when it names none
    (e.g. an anonymous request) and :class:`TaskValidationError` on a bad id."""
    user_id = resolve_user_id_or_none(obj)
    if user_id is None:
        raise MissingTenantError(f"{type(obj).__name__} {obj!r} does not name a FairQueue tenant")
    return user_id


@contextmanager
def tenant(obj: Any) -> Iterator[str | None]:
    """Make *obj*'s user id the current tenant inside the block (``None`` clears it)::

        with tenant(request.user):
            enqueue(send_report(42))
    """
    user_id = None if obj is None else resolve_user_id(obj)
    with use_tenant(user_id):
        yield user_id


def current_tenant() -> str | None:
    """The current user id (of the running task, else the current tenant), or ``None``."""
    return current_user(required=False)
