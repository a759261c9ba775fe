"""The tenant page: one tenant's depth per priority, leased tasks with their workers and progress,
queued and delayed tasks (paged, searched by task id or function name), its limits and where
each comes from, paused / held state; and its actions.

* ``admin/fairque_django/fairqueue/tenant/?id=<user id>`` — the page (``admin:fairque_tenant``),
  needs ``fairque_django.view_fairqueue``; the id is a query parameter, so any user id
  (``org:1/eu``, ``a b?``) round-trips;
* ``admin/fairque_django/fairqueue/tenant/action/`` (``admin:fairque_tenant_action``) — pause,
  resume, set or clear the runtime limits, cancel queued / delayed tasks or all of them: POST
  only, a confirmation page first (the action runs on a POST with ``confirm=yes``), and the
  permission ``fairque_django.manage_tenants``.

The data comes from :class:`~fairque_django.core.observe.TenantView` (bounded reads) and the
queue's tenant methods.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed
from django.shortcuts import redirect

from ..core.config.limits import parse_rate
from ..core.ids import user_id_problem
from ..core.observe import PRIORITY_LANES, TenantTask, TenantTasks, TenantView
from .format import format_age, when

if TYPE_CHECKING:
    from .views import FairQueueViews

MANAGE_TENANTS_PERMISSION: Final = "fairque_django.manage_tenants"
TASKS_PER_PAGE: Final = 25
LEASED_SHOWN: Final = 100
MAX_SELECTED: Final = 1000
ACTIONS: Final = {
    "pause": "Pause tenant", "resume": "Resume tenant", "limits": "Set runtime limits",
    "clear": "Clear runtime limits", "cancel": "Cancel tasks", "cancel_all": "Cancel all queued tasks",
}
LIMIT_NAMES: Final = (("concurrency", "Concurrency cap"), ("rate", "Rate"), ("burst", "Burst"))
HELD_TEXT: Final = {"paused": "held: paused", "cap": "held: at its cap", "rate": "held: waiting for a rate token"}


def can_manage_tenants(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_staff and request.user.has_perm(MANAGE_TENANTS_PERMISSION))


def limit_changes(post: Any) -> dict[str, Any] | str:
    """The keyword arguments of ``set_tenant_limits`` from the limits form (blank: keep the runtime
    value; ``none``: no limit, for concurrency and rate), or why the form is wrong."""
    out: dict[str, Any] = {}
    for name in ("concurrency", "burst"):
        raw = str(post.get(name, "")).strip()
        if not raw:
            continue
        if raw.lower() == "none" and name == "concurrency":
            out[name] = None
        elif raw.isdigit() and int(raw) >= 1:
            out[name] = int(raw)
        else:
            extra = " or none" if name == "concurrency" else ""
            return f"{name.capitalize()} must be a whole number of at least 1{extra}, not “{raw}”."
    rate = str(post.get("rate", "")).strip()
    if rate:
        if rate.lower() == "none":
            out["rate"] = None
        else:
            try:
                parse_rate(rate)
            except ValueError as exc:
                return f"Rate: {exc} (write it like 10/s, 100/m or 1000/h)."
            out["rate"] = rate
    return out or "Nothing to change: fill in at least one limit (or clear the runtime limits)."


def describe_limit(name: str, value: Any) -> str:
    if value is None:
        return "no limit" if name != "burst" else "1 (default)"
    return str(value)


class TenantPages:
    """The tenant page and its action view, sharing :class:`~.views.FairQueueViews`' helpers."""

    def __init__(self, views: FairQueueViews) -> None:
        self.views = views

    def page_url(self, tenant: str, **params: Any) -> str:
        query = {"id": tenant, **{k: v for k, v in params.items() if v not in (None, "", 1)}}
        return self.views.url("fairque_tenant") + "?" + urlencode(query)

    # --- the page -----------------------------------------------------------------------------
    def tenant(self, request: HttpRequest) -> HttpResponse:
        views = self.views
        tenant = request.GET.get("id", "")
        problem = user_id_problem(tenant, views.queue().config.queue.max_user_id_length)
        if problem is not None:
            messages.warning(request, f"No such tenant: {problem}.")
            return redirect(views.url("fairque_dashboard"))
        search = request.GET.get("q", "").strip()
        qp, dp = _page_number(request.GET.get("qp")), _page_number(request.GET.get("dp"))
        view = TenantView(views.queue(), tenant)
        detail = view.detail()
        leased = view.leased(LEASED_SHOWN)
        queued = view.queued((qp - 1) * TASKS_PER_PAGE, TASKS_PER_PAGE, search or None)
        delayed = view.delayed((dp - 1) * TASKS_PER_PAGE, TASKS_PER_PAGE, search or None)
        now = detail.timestamp
        limits = detail.limits
        ctx = views.context(
            request, f"Tenant {tenant}", tenant=tenant, detail=detail, search=search,
            depth=[{"lane": lane, "label": "Critical" if lane == "critical" else f"Priority {lane}",
                    "n": detail.depth[lane]} for lane in PRIORITY_LANES],
            limit_rows=[{"name": name, "label": label, "value": describe_limit(name, limits.get(name)),
                         "source": limits.get(f"{name}_source", "default")} for name, label in LIMIT_NAMES],
            runtime={name: ("none" if limits.get(name) is None and name != "burst" else limits.get(name))
                     for name, _ in LIMIT_NAMES if limits.get(f"{name}_source") == "runtime"},
            paused_since=when(limits.get("paused_since")),
            held_text=HELD_TEXT.get(limits.get("held") or "", ""),
            shard=view.shard, shard_text=f"keyspace shard {view.shard} of {view.shards}" if view.shards > 1 else "",
            next_token=when(limits.get("next_token_at")),
            leased=leased, leased_rows=[self._row(t, now) for t in leased.tasks],
            queued=queued, queued_rows=[self._row(t, now) for t in queued.tasks],
            queued_pages=self._pages(tenant, queued, "qp", qp, search, dp=dp),
            delayed=delayed, delayed_rows=[self._row(t, now) for t in delayed.tasks],
            delayed_pages=self._pages(tenant, delayed, "dp", dp, search, qp=qp),
            can_manage_tenants=can_manage_tenants(request),
            action_url=views.url("fairque_tenant_action"), page_url=request.get_full_path(),
            tenant_dlq_url=views.dlq_url + "?" + urlencode({"user": tenant}),
            clear_search_url=self.page_url(tenant), action_checkbox_name=ACTION_CHECKBOX_NAME,
        )
        return views.render(request, "tenant.html", ctx)

    def _row(self, t: TenantTask, now: float) -> dict[str, Any]:
        return {"task": t, "func": t.func or ("(corrupt body)" if t.corrupt else "payload task"),
                "priority": t.priority_name, "since": when(t.since),
                "age": format_age(now - t.since) if t.since and t.lane != "delayed" else None,
                "due_in": format_age(t.since - now) if t.since and t.lane == "delayed" else None,
                "deadline_in": format_age(t.deadline - now) if t.deadline else None,
                "created": when(t.created_at)}

    def _pages(self, tenant: str, tasks: TenantTasks, param: str, number: int, search: str,
               **other: int) -> list[dict[str, Any]]:
        paginator = Paginator(range(tasks.total), TASKS_PER_PAGE)
        if paginator.num_pages <= 1:
            return []
        number = min(number, paginator.num_pages)
        return [{"number": n, "current": n == number,
                 "url": self.page_url(tenant, q=search, **{**other, param: n}) if isinstance(n, int) else None}
                for n in paginator.get_elided_page_range(number, on_each_side=2, on_ends=1)]

    # --- actions ------------------------------------------------------------------------------
    def action(self, request: HttpRequest) -> HttpResponse:
        """Every tenant action: a confirmation page, then the action on a POST with ``confirm=yes``."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        views = self.views
        queue = views.queue()
        tenant, action = request.POST.get("tenant", ""), request.POST.get("action", "")
        problem = user_id_problem(tenant, queue.config.queue.max_user_id_length)
        if problem is not None:
            return HttpResponseBadRequest(f"tenant: {problem}")
        if action not in ACTIONS:
            return HttpResponseBadRequest("unknown action")
        back = views.safe_next(request, self.page_url(tenant))
        changes: dict[str, Any] = {}
        tasks: list[TenantTask] = []
        missing: list[str] = []
        if action == "limits":
            found = limit_changes(request.POST)
            if isinstance(found, str):
                messages.error(request, found)
                return redirect(back)
            changes = found
        elif action == "cancel":
            ids = [i.strip() for i in request.POST.getlist(ACTION_CHECKBOX_NAME) if i.strip()]
            if len(ids) > MAX_SELECTED:
                return HttpResponseBadRequest(f"at most {MAX_SELECTED} tasks can be cancelled at once")
            if not ids:
                messages.warning(request, "Select the tasks to cancel. No task has been cancelled.")
                return redirect(back)
            tasks, missing = TenantView(queue, tenant).tasks(ids)
        if request.POST.get("confirm") != "yes":
            return self._confirm(request, tenant, action, back, changes, tasks, missing)
        return self._act(request, tenant, action, back, changes, tasks, missing)

    def _confirm(self, request: HttpRequest, tenant: str, action: str, back: str, changes: dict[str, Any],
                 tasks: list[TenantTask], missing: list[str]) -> HttpResponse:
        views = self.views
        queue = views.queue()
        view = TenantView(queue, tenant)
        detail = view.detail()
        limits = detail.limits
        ctx = views.context(
            request, "Are you sure?", tenant=tenant, action=action, action_title=ACTIONS[action], detail=detail,
            next_url=back, tenant_url=self.page_url(tenant), action_url=views.url("fairque_tenant_action"),
            changes=[{"name": name, "label": label, "old": describe_limit(name, limits.get(name)),
                      "source": limits.get(f"{name}_source"), "new": describe_limit(name, changes[name]),
                      "raw": "none" if changes[name] is None else changes[name]}
                     for name, label in LIMIT_NAMES if name in changes],
            task_rows=[self._row(t, detail.timestamp) for t in tasks], missing=missing,
            selected_ids=[t.task_id for t in tasks], action_checkbox_name=ACTION_CHECKBOX_NAME,
            queued_count=detail.ready, delayed_count=detail.delayed,
        )
        return views.render(request, "tenant_confirm.html", ctx)

    def _act(self, request: HttpRequest, tenant: str, action: str, back: str, changes: dict[str, Any],
             tasks: list[TenantTask], missing: list[str]) -> HttpResponse:
        queue = self.views.queue()
        if action == "pause":
            queue.pause_tenant(tenant)
            messages.success(request, f"Tenant {tenant} is paused: none of its tasks is leased until it is resumed "
                                      "(running tasks finish, pushes are accepted).")
        elif action == "resume":
            queue.resume_tenant(tenant)
            messages.success(request, f"Tenant {tenant} is resumed: it rejoins its rotation at its fair place.")
        elif action == "limits":
            state = queue.set_tenant_limits(tenant, **changes)
            now = ", ".join(f"{label.lower()} {describe_limit(name, state.get(name))}" for name, label in LIMIT_NAMES)
            messages.success(request, f"Runtime limits of {tenant} set: {now}.")
        elif action == "clear":
            state = queue.clear_tenant_limits(tenant)
            now = ", ".join(f"{label.lower()} {describe_limit(name, state.get(name))} "
                            f"({state.get(f'{name}_source')})" for name, label in LIMIT_NAMES)
            messages.success(request, f"Runtime limits of {tenant} cleared; in force now: {now}.")
        else:
            return self._cancel(request, tenant, action, back, tasks, missing)
        return redirect(back)

    def _cancel(self, request: HttpRequest, tenant: str, action: str, back: str, tasks: list[TenantTask],
                missing: list[str]) -> HttpResponse:
        """``cancel``: the selected tasks (``queue.cancel`` with the tenant, so another tenant's id
        is never touched); ``cancel_all``: every queued and delayed task (``queue.cancel_tenant``)."""
        queue = self.views.queue()
        if action == "cancel_all":
            n = queue.cancel_tenant(tenant).get("cancelled", 0)
            if n:
                messages.success(request, f"Cancelled {_plural(n, 'queued or delayed task', 'queued or delayed tasks')}"
                                          f" of {tenant}.")
            else:
                messages.info(request, f"Tenant {tenant} had no queued or delayed task: nothing was cancelled.")
            return redirect(back)
        outcomes = Counter(queue.cancel(t.task_id, user_id=tenant).value for t in tasks)
        if outcomes["cancelled"]:
            messages.success(request, f"Cancelled {_plural(outcomes['cancelled'], 'task', 'tasks')}.")
        if outcomes["cancelling"]:
            messages.info(request, f"{_plural(outcomes['cancelling'], 'task was', 'tasks were')} running: asked to "
                                   "stop at the next heartbeat (they end as cancelled).")
        gone = len(missing) + outcomes["not_found"] + outcomes["finished"]
        if gone:
            messages.warning(request, f"{_plural(gone, 'task was', 'tasks were')} no longer queued or running: "
                                      "not cancelled.")
        return redirect(back)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _page_number(raw: str | None) -> int:
    try:
        return max(1, int(raw or "1"))
    except ValueError:
        return 1
