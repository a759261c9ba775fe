"""The FairQueue admin pages: dashboard, dead-letter queue list and detail, requeue/delete.

Every view is wrapped by ``AdminSite.admin_view`` (staff login, CSRF, never cached) and checks
``fairque_django.view_fairqueue``; the views that change data also need
``fairque_django.manage_fairqueue``. Destructive actions are POSTs that first render a
confirmation page and only act on a POST that carries ``confirm=yes``.

(About 400 lines: the views of one small admin app, kept together with their shared permission
and confirmation helpers; the data they show comes from :mod:`.monitoring` and the core's read model.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import Truncator

from ..conf import get_queue
from ..core.errors import FairQueueError
from ..core.models import DLQEntry, Priority
from ..core.observe import DeadLetters, QueueMetrics
from ..core.sharded import AnyQueue
from .format import format_age, when
from .monitoring import RATE_WINDOW, dashboard_snapshot, monitoring_context

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite, ModelAdmin

VIEW_PERMISSION = "fairque_django.view_fairqueue"
MANAGE_PERMISSION = "fairque_django.manage_fairqueue"
PER_PAGE = 50
MAX_SELECTED = 1000  # ids one POST may name
CONFIRM_PREVIEW = 100  # dead tasks listed on an "all" confirmation page
USERS_SHOWN = 50
FACETS_SHOWN = 20
FACET_SCAN = 2000  # newest dead tasks whose users / error types fill the filter sidebar

View = TypeVar("View", bound=Callable[..., HttpResponse])


def can_view(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_staff and request.user.has_perm(VIEW_PERMISSION))


def can_manage(request: HttpRequest) -> bool:
    return can_view(request) and request.user.has_perm(MANAGE_PERMISSION)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


class FairQueueViews:
    """The views, bound to the ModelAdmins that mount them (``FairQueueAdmin`` for the
    dashboard, ``DeadLetterQueueAdmin`` for the DLQ)."""

    def __init__(self, dashboard_admin: ModelAdmin[Any], dlq_admin: ModelAdmin[Any] | None = None,
                 queue_factory: Callable[[], AnyQueue] | None = None) -> None:
        self.dashboard_admin = dashboard_admin
        self.dlq_admin = dlq_admin or dashboard_admin
        self.admin_site: AdminSite = dashboard_admin.admin_site
        self.queue_factory = queue_factory or get_queue

    # --- helpers ------------------------------------------------------------------------
    @property
    def site_name(self) -> str:
        return self.admin_site.name

    def url(self, name: str, *args: Any) -> str:
        return reverse(f"{self.site_name}:{name}", args=args)

    @property
    def dlq_url(self) -> str:
        return self.url("fairque_dlq")

    def queue(self) -> AnyQueue:
        return self.queue_factory()

    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.queue())

    def context(self, request: HttpRequest, title: str, *, dlq: bool = False, **extra: Any) -> dict[str, Any]:
        model_admin = self.dlq_admin if dlq else self.dashboard_admin
        ctx: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": model_admin.model._meta,
            "app_label": model_admin.model._meta.app_label,
            "can_manage": can_manage(request),
            "dashboard_url": self.url("fairque_dashboard"),
            "dlq_url": self.dlq_url,
            "requeue_url": self.url("fairque_dlq_requeue"),
            "delete_url": self.url("fairque_dlq_delete"),
            "schedules_url": self.url("fairque_schedules"),
        }
        ctx.update(extra)
        return ctx

    def render(self, request: HttpRequest, template: str, context: dict[str, Any],
               status: int = 200) -> TemplateResponse:
        request.current_app = self.site_name
        return TemplateResponse(request, f"fairque_django/admin/{template}", context, status=status)

    def guarded(self, view: View, *, manage: bool = False, permission: str | None = None) -> View:
        """Check the permissions (``view_fairqueue``, and ``manage_fairqueue`` with ``manage``, or
        ``permission``), and show Redis errors as a 503 page instead of a crash."""
        needed = permission or (MANAGE_PERMISSION if manage else None)

        @wraps(view)
        def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not can_view(request) or (needed is not None and not request.user.has_perm(needed)):
                return self.forbidden(request, VIEW_PERMISSION if not can_view(request) else str(needed))
            try:
                return view(request, *args, **kwargs)
            except FairQueueError as exc:
                return self.render(request, "unavailable.html",
                                   self.context(request, "FairQueue is unavailable", error=str(exc)),
                                   status=503)

        return inner  # type: ignore[return-value]

    def forbidden(self, request: HttpRequest, permission: str) -> HttpResponse:
        """403 in the admin's look (header, breadcrumbs, user tools), naming the missing permission."""
        from django.contrib.auth.models import Permission

        app_label, codename = permission.split(".", 1)
        described = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
        ctx = self.context(request, "Permission denied", permission=permission,
                           permission_name=described.name if described else "")
        return self.render(request, "forbidden.html", ctx, status=403)

    def entry_row(self, entry: DLQEntry, now: float) -> dict[str, Any]:
        task = entry.task
        func = task.func_name or ("(corrupt body)" if entry.raw_body is not None else "payload task")
        return {
            "entry": entry,
            "task_id": entry.task_id,
            "user_id": entry.user_id,
            "func": func,
            "error_type": entry.error_type or "?",
            "error": Truncator(entry.error).chars(120),
            "failure_type": entry.failure_type,
            "attempts": entry.attempts,
            "counts_text": entry.counts_text,
            "dead_at": when(entry.dead_at),
            "dead_age": format_age(now - entry.dead_at) if entry.dead_at else "—",
            "url": self.url("fairque_dlq_detail", entry.task_id),
        }

    def safe_next(self, request: HttpRequest, default: str) -> str:
        target = request.POST.get("next") or request.GET.get("next") or ""
        if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                       require_https=request.is_secure()):
            return target
        return default

    def tenant_url(self, tenant: str) -> str:
        """The tenant page of ``tenant`` (its id in the query string: any id round-trips)."""
        return self.url("fairque_tenant") + "?" + urlencode({"id": tenant})

    # --- dashboard ----------------------------------------------------------------------
    def dashboard(self, request: HttpRequest) -> HttpResponse:
        queue = self.queue()
        metrics = dashboard_snapshot(queue, USERS_SHOWN)  # the one read of the queue's state
        ctx = self.context(request, "FairQueue dashboard", **self.dashboard_context(metrics),
                           prefix=queue.config.queue.stats_prefix)
        for row in ctx["user_rows"]:
            row["url"] = self.tenant_url(row["row"].tenant)
        ctx.update(monitoring_context(queue, metrics))
        return self.render(request, "dashboard.html", ctx)

    @staticmethod
    def dashboard_context(metrics: QueueMetrics) -> dict[str, Any]:
        """Counters with their rates, gauges, the busiest users and the workers, from one snapshot."""
        stats = metrics.stats()
        rates = metrics.windows.get(RATE_WINDOW)
        labels = [("pushed", "Pushed"), ("completed", "Completed"), ("failed", "Failed attempts"),
                  ("retried", "Retries scheduled"), ("dead", "Dead-lettered"), ("expired", "Leases expired"),
                  ("requeued", "Requeued from DLQ"), ("deleted", "Deleted")]
        totals = [{"name": name, "label": label, "total": stats.get(f"tasks_{name}", 0),
                   "rate": rates.per_minute(name) if rates is not None else None} for name, label in labels]
        gauges = [("Ready (queued)", stats["tasks_queued"]), ("Running (leased)", stats["tasks_active"]),
                  ("Delayed (scheduled or retry back-off)", stats["tasks_delayed"]),
                  ("Users with unfinished work", metrics.tenants_with_work)]
        shown = metrics.tenants[:USERS_SHOWN]
        user_rows = [{"row": r, "oldest": format_age(r.oldest_wait_seconds),
                      "oldest_critical": format_age(r.oldest_critical_seconds),
                      "oldest_normal": format_age(r.oldest_normal_seconds)} for r in shown]
        worker_rows = [{"row": w, "age": format_age(w.heartbeat_age), "last_seen": when(w.last_seen),
                        "running": w.current[:10], "more_running": max(0, len(w.current) - 10),
                        "assigned": ", ".join(w.assigned) or "—",
                        "steals": ", ".join(w.steals) or "—"} for w in metrics.workers]
        return {"stats": stats, "rates": rates, "rate_window": format_age(rates.seconds) if rates else None,
                "totals": totals, "gauges": gauges, "user_rows": user_rows, "workers": worker_rows,
                "users_shown": len(shown), "users_total": metrics.tenants_with_work,
                "users_truncated": len(shown) < metrics.tenants_with_work,
                "leases_truncated": metrics.leases_truncated, "leases_scanned": metrics.leases_scanned,
                "leases_total": metrics.leased, "dlq_size": stats["dlq_size"],
                "tenants_paused": metrics.tenants_paused, "tenants_held": metrics.tenants_held}

    # --- dead-letter queue ----------------------------------------------------------------
    def dlq_list(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            return self.guarded(self._dlq_action, manage=True)(request)
        user = request.GET.get("user", "").strip()
        error_type = request.GET.get("error_type", "").strip()
        search = request.GET.get("q", "").strip()
        try:
            page_number = max(1, int(request.GET.get("p", "1")))
        except ValueError:
            page_number = 1
        dead = self.dead_letters()
        page = dead.page((page_number - 1) * PER_PAGE, PER_PAGE, user=user or None,
                         error_type=error_type or None, search=search or None)
        if not page.entries and page_number > 1 and page.total:
            last = (page.total - 1) // PER_PAGE + 1
            return redirect(self._list_query(user, error_type, search, last))
        facets = dead.facets(FACET_SCAN)
        now = dead.redis_time()
        paginator = Paginator(range(page.total), PER_PAGE)
        number = min(page_number, max(1, paginator.num_pages))
        pages = []
        if paginator.num_pages > 1:
            for n in paginator.get_elided_page_range(number, on_each_side=2, on_ends=1):
                pages.append({"number": n, "current": n == number,
                              "url": self._list_query(user, error_type, search, n)
                              if isinstance(n, int) else None})
        user_choices = self._choices("user", user, [u for u, _ in facets.users][:FACETS_SHOWN],
                                     dict(facets.users), user, error_type, search)
        type_choices = self._choices("error_type", error_type,
                                     [t for t, _ in facets.error_types][:FACETS_SHOWN],
                                     dict(facets.error_types), user, error_type, search)
        ctx = self.context(
            request, "Dead-letter queue", dlq=True, page=page,
            rows=[self.entry_row(e, now) for e in page.entries], pages=pages,
            user_filter=user, error_type_filter=error_type, search=search,
            has_filters=bool(user or error_type), user_choices=user_choices, type_choices=type_choices,
            facets=facets, clear_filters_url=self._list_query("", "", search, 1),
            list_url=request.get_full_path(), first_index=page.offset + 1,
            last_index=page.offset + len(page.entries), action_checkbox_name=ACTION_CHECKBOX_NAME,
            scan_limit=dead.scan_limit,
        )
        return self.render(request, "dlq_list.html", ctx)

    def _list_query(self, user: str, error_type: str, search: str, page: int) -> str:
        params = {k: v for k, v in (("user", user), ("error_type", error_type), ("q", search)) if v}
        if page > 1:
            params["p"] = str(page)
        return self.dlq_url + ("?" + urlencode(params) if params else "")

    def _choices(self, param: str, selected: str, values: list[str], counts: dict[str, int],
                 user: str, error_type: str, search: str) -> list[dict[str, Any]]:
        if selected and selected not in values:
            values = [selected, *values]
        out = [{"display": "All", "selected": not selected,
                "url": self._list_query("" if param == "user" else user,
                                        "" if param == "error_type" else error_type, search, 1)}]
        for value in values:
            count = counts.get(value)
            out.append({
                "display": f"{value} ({count})" if count is not None else value,
                "selected": value == selected,
                "url": self._list_query(value if param == "user" else user,
                                        value if param == "error_type" else error_type, search, 1),
            })
        return out

    def _dlq_action(self, request: HttpRequest) -> HttpResponse:
        """The list's action form: render the confirmation page for the selected tasks."""
        back = request.get_full_path()
        action = request.POST.get("action", "")
        if action not in ("requeue_selected", "delete_selected"):
            messages.warning(request, "No action selected.")
            return redirect(back)
        ids = self._selected(request)
        if isinstance(ids, HttpResponse):
            return ids
        if not ids:
            messages.warning(request, "Items must be selected in order to perform actions on them. "
                                      "No items have been changed.")
            return redirect(back)
        kind = "requeue" if action == "requeue_selected" else "delete"
        return self._confirm(request, kind, ids, all_tasks=False, next_url=back)

    def dlq_detail(self, request: HttpRequest, task_id: str) -> HttpResponse:
        dead = self.dead_letters()
        entry = dead.dead_task(task_id)
        if entry is None:
            state = self.queue().get_task_state(task_id)
            where = f" (it is now {state.get('st', 'unknown')})" if state else ""
            messages.warning(request, f"Dead task with ID “{task_id}” doesn't exist{where}. "
                                      "Perhaps it was requeued or deleted?")
            return redirect(self.dlq_url)
        task = entry.task
        now = dead.redis_time()
        fields: list[tuple[str, Any, str]] = [  # label, value, kind (text/pre/json/time)
            ("Task ID", entry.task_id, "code"),
            ("User", entry.user_id, "text"),
            ("Function", task.func_name or "— (payload task)", "code"),
            ("Priority", f"{Priority(task.priority).name} ({int(task.priority)})", "text"),
            ("Args", _pretty(task.args), "json"),
            ("Kwargs", _pretty(task.kwargs), "json"),
            ("Payload", _pretty(task.payload), "json"),
        ]
        if task.metadata:
            fields.append(("Metadata", _pretty(task.metadata), "json"))
        if entry.raw_body is not None:
            fields.append(("Raw body (corrupt)", entry.raw_body, "pre"))
        fields += [
            ("Error", entry.error, "pre"),
            ("Error type", entry.error_type or "—", "code"),
            ("Failure type", entry.failure_type or "—", "text"),
            ("Attempts", entry.attempts, "text"),  # the words of DLQEntry.counts_text, one per row
            ("Retries", entry.retries_text, "text"),
            ("Failures", entry.failures, "text"),
            ("Dead at", when(entry.dead_at), "time"),
            ("Dead for", format_age(now - entry.dead_at) if entry.dead_at else "—", "text"),
            ("Created", when(task.created_at), "time"),
        ]
        if task.execute_after:
            fields.append(("Not before", when(task.execute_after), "time"))
        if task.timeout:
            fields.append(("Timeout", f"{task.timeout:g} s", "text"))
        ctx = self.context(request, f"Dead task {entry.task_id}", dlq=True, entry=entry, fields=fields,
                           traceback=entry.traceback, next_url=self.dlq_url)
        return self.render(request, "dlq_detail.html", ctx)

    # --- destructive actions ------------------------------------------------------------------
    def dlq_requeue(self, request: HttpRequest) -> HttpResponse:
        return self._act(request, "requeue")

    def dlq_delete(self, request: HttpRequest) -> HttpResponse:
        return self._act(request, "delete")

    def _selected(self, request: HttpRequest) -> list[str] | HttpResponse:
        ids = [i.strip() for i in request.POST.getlist(ACTION_CHECKBOX_NAME) if i.strip()]
        if len(ids) > MAX_SELECTED:
            return HttpResponseBadRequest(f"at most {MAX_SELECTED} tasks can be changed at once")
        return list(dict.fromkeys(ids))

    def _act(self, request: HttpRequest, kind: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        all_tasks = request.POST.get("all") == "1"
        ids = self._selected(request)
        if isinstance(ids, HttpResponse):
            return ids
        next_url = self.safe_next(request, self.dlq_url)
        if not all_tasks and not ids:
            messages.warning(request, "Items must be selected in order to perform actions on them. "
                                      "No items have been changed.")
            return redirect(next_url)
        if request.POST.get("confirm") != "yes":
            return self._confirm(request, kind, ids, all_tasks=all_tasks, next_url=next_url)
        queue = self.queue()
        target = None if all_tasks else ids
        done = queue.requeue_dead(target) if kind == "requeue" else queue.delete_dead(target)
        verb = "Requeued" if kind == "requeue" else "Deleted"
        missing = 0 if all_tasks else len(ids) - len(done)
        if done:
            text = f"{verb} {_plural(len(done), 'dead task', 'dead tasks')}."
            if all_tasks and kind == "delete":
                text = f"Purged the dead-letter queue: deleted {_plural(len(done), 'dead task', 'dead tasks')}."
            messages.success(request, text)
        if missing:
            messages.warning(request, f"{_plural(missing, 'task was', 'tasks were')} no longer in the "
                                      "dead-letter queue.")
        if not done and not missing:
            messages.info(request, f"The dead-letter queue is empty: nothing was {verb.lower()}.")
        return redirect(next_url)

    def _confirm(self, request: HttpRequest, kind: str, ids: list[str], *, all_tasks: bool,
                 next_url: str) -> HttpResponse:
        dead = self.dead_letters()
        now = dead.redis_time()
        if all_tasks:
            page = dead.page(0, CONFIRM_PREVIEW)
            entries, count = page.entries, page.dlq_size
            missing: list[str] = []
        else:
            entries, missing = dead.dead_tasks(ids)
            count = len(entries)
            if not entries:
                messages.warning(request, f"{_plural(len(missing), 'task was', 'tasks were')} no longer in "
                                          "the dead-letter queue. No items have been changed.")
                return redirect(next_url)
        if kind == "requeue":
            title = "Requeue all dead tasks" if all_tasks else "Requeue dead tasks"
            button = "Yes, requeue"
        else:
            title = "Purge the dead-letter queue" if all_tasks else "Delete dead tasks"
            button = "Yes, delete"
        ctx = self.context(
            request, "Are you sure?", dlq=True, kind=kind, action_title=title, all_tasks=all_tasks,
            rows=[self.entry_row(e, now) for e in entries], missing=missing, count=count,
            more=max(0, count - len(entries)), selected_ids=[e.task_id for e in entries] + missing,
            next_url=next_url, post_url=self.url(f"fairque_dlq_{kind}"), button=button,
            action_checkbox_name=ACTION_CHECKBOX_NAME,
        )
        return self.render(request, "confirm.html", ctx)

    # --- schedules --------------------------------------------------------------------------
    def schedules(self, request: HttpRequest) -> HttpResponse:
        """Every periodic schedule: timing, tenants, last and next tick, state; run now / pause /
        resume buttons (POST, confirmed first, ``manage_fairqueue``)."""
        from ..schedules import statuses

        rows = []
        for st in statuses():
            s = st.schedule
            tenants = s.user if s.user is not None else (
                ", ".join(s.tenants) if isinstance(s.tenants, tuple) else (s.tenants or "(a callable)"))
            rows.append({
                "status": st, "name": s.name, "task": s.task, "tenants": tenants,
                "timing": f"cron {s.cron} ({s.timezone})" if s.cron else f"every {s.every} s",
                "last": _zoned(st.last_tick, s.zone), "next": _zoned(st.next_tick, s.zone),
                "last_fired": when(st.last_fired_ms / 1000 if st.last_fired_ms else None),
                "catch_up": "fires once" if s.catch_up else "skipped",
            })
        ctx = self.context(request, "Schedules", rows=rows, action_url=self.url("fairque_schedule_action"))
        return self.render(request, "schedules.html", ctx)

    def schedule_action(self, request: HttpRequest) -> HttpResponse:
        """Run now, pause or resume one schedule: a confirmation page, then the action on a POST
        with ``confirm=yes``."""
        from ..schedules import find_schedule, pause, resume, run_now

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        back = self.url("fairque_schedules")
        action, name = request.POST.get("action", ""), request.POST.get("name", "")
        if action not in SCHEDULE_ACTIONS:
            return HttpResponseBadRequest("unknown action")
        try:
            schedule = find_schedule(name)
        except KeyError as exc:
            messages.warning(request, exc.args[0])
            return redirect(back)
        if request.POST.get("confirm") != "yes":
            ctx = self.context(request, "Are you sure?", schedule=schedule, action=action,
                               action_title=SCHEDULE_ACTIONS[action], action_url=self.url("fairque_schedule_action"),
                               schedules_url=back)
            return self.render(request, "schedule_confirm.html", ctx)
        if action == "run":
            pushed = run_now(schedule.name)
            messages.success(request, f"Schedule {schedule.name}: pushed {_plural(pushed, 'task', 'tasks')} now.")
        elif action == "pause":
            pause(schedule.name)
            messages.success(request, f"Schedule {schedule.name} is paused: its ticks are skipped.")
        else:
            resume(schedule.name)
            messages.success(request, f"Schedule {schedule.name} is resumed.")
        return redirect(back)


SCHEDULE_ACTIONS = {"run": "Run now", "pause": "Pause", "resume": "Resume"}


def _zoned(ts: float | None, zone: Any) -> Any:
    from datetime import datetime

    return datetime.fromtimestamp(ts, zone) if ts else None
