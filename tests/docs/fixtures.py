"""Per-document fixtures and checks for the executable documentation (tests/docs/snippets.py):
the names a snippet uses without defining them, and what must be true once a worker ran."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import yaml

from tests.support.processes import ROOT
from tests.support.redis_url import REDIS_URL

if TYPE_CHECKING:
    from .snippets import DocProject


class Tenant:
    """Any object the default resolver maps (it reads ``fairque_user_id``)."""

    def __init__(self, user_id: str) -> None:
        self.fairque_user_id = user_id


def nothing(*args: Any) -> None:
    return None


@dataclass
class DocSpec:
    """What one document needs: fixtures, hooks after its blocks, and its worker checks."""

    setup: Callable[[DocProject], dict[str, Any]] = lambda proj: {}
    before_settings: Callable[[DocProject, dict[str, Any]], None] = nothing
    after_module: Callable[[DocProject, str, ModuleType], None] = nothing
    after_code: Callable[[DocProject, int], None] = nothing
    after_shell: Callable[[DocProject, int], None] = nothing
    after_command: Callable[[DocProject, list[str], Any], None] = nothing
    after_worker: Callable[[DocProject], None] = nothing
    teardown: Callable[[DocProject], None] = nothing
    check_yaml: Callable[[DocProject, Any], None] = nothing
    check_json: Callable[[DocProject, Any], None] = nothing
    in_process_worker: bool = False  # its tasks use the (in-memory) test database
    worker_serves: bool = True  # the tasks are queued before `runfairworker` starts
    expected_dead: int = 0
    state: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- shared helpers


def check_pip_install(args: list[str]) -> None:
    """``pip install fairque-django[extra]``: this project's distribution name and extras (nothing installed)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^name = "fairque-django"$', pyproject, re.MULTILINE)
    for arg in (a for a in args if not a.startswith("-")):
        m = re.fullmatch(r"(?P<name>[\w.-]+)(?:\[(?P<extras>[\w,]+)\])?", arg)
        assert m and m["name"] == "fairque-django", arg
        for extra in (m["extras"] or "").split(","):
            assert not extra or re.search(rf"^{extra} = \[", pyproject, re.MULTILINE), f"no extra {extra!r}"


ALERT_LINE = re.compile(r"^(FIRING|ok)\s+\S+ \[\w+, \w+\]( \(since [^)]*\))?: .+$")
ALERT_TOTAL = re.compile(r"^(\d+) of (\d+) rule\(s\) firing$")


def check_alerts_output(proj: DocProject, res: subprocess.CompletedProcess[str], documented: list[str]) -> None:
    """``fairque_alerts``: one line per rule in the documented shape, a total, exit 1 iff one fires."""
    from fairque_django.alerts import alert_rules

    lines = res.stdout.strip().splitlines()
    rules = alert_rules()  # FAIRQUE["ALERTS"] and the built-in tenant-starved rule
    total = ALERT_TOTAL.match(lines[-1])
    assert total and int(total[2]) == len(rules), res.stdout
    assert res.returncode == (1 if int(total[1]) else 0), res.stdout + res.stderr
    assert all(ALERT_LINE.match(line) for line in lines[:-1]), res.stdout
    shown = [line for line in documented if not line.startswith("$")]
    if shown:  # the transcript in the document has the same shape
        assert all(ALERT_LINE.match(line) for line in shown[:-1]) and ALERT_TOTAL.match(shown[-1]), shown


def exported_metric_names(proj: DocProject) -> set[str]:
    from fairque_django.conf import get_queue
    from fairque_django.core.observe import collect_metrics
    from fairque_django.prometheus import render

    text = render(collect_metrics(get_queue(), top_n=20)).decode()
    names = set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))
    return names | {n + suffix for n in names for suffix in ("_bucket", "_sum", "_count", "_total")}


def example_env(proj: DocProject) -> dict[str, str]:
    return {"FAIRQUE_REDIS_URL": REDIS_URL, "FAIRQUE_EXAMPLE_DB": str(proj.tmp / "example.sqlite3")}


def run_curl(proj: DocProject, argv: list[str]) -> None:
    """``curl`` against the runserver this block started (its port instead of 8000)."""
    assert proj.port is not None, "curl before runserver"
    argv = [a.replace("localhost:8000", f"127.0.0.1:{proj.port}") for a in argv]
    res = subprocess.run([*argv[:1], "-s", "-f", *argv[1:]], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    if "-X" in argv:  # the POST: the order is queued
        assert '"task_id"' in res.stdout, res.stdout
        return
    deadline = time.monotonic() + 30  # the GET: the workers confirm the order
    while '"confirmed"' not in res.stdout and time.monotonic() < deadline:
        time.sleep(0.2)
        res = subprocess.run([*argv[:1], "-s", "-f", *argv[1:]], capture_output=True, text=True, timeout=30)
    assert '"status": "confirmed"' in res.stdout, res.stdout


# --------------------------------------------------------------------------- a "shop" app for the docs

SHOP_MODELS = '''
from django.db import models


class Organization(models.Model):
    name = models.CharField(max_length=50)


class Order(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    item = models.CharField(max_length=50, default="")
    status = models.CharField(max_length=20, default="new")

    def mark_processed(self):
        self.status = "processed"
        self.save(update_fields=["status"])
'''

SHOP_TASKS = '''
from fairque_django import task


@task
def process_order(order_id: int) -> int:
    from shop.models import Order
    Order.objects.get(pk=order_id).mark_processed()
    return order_id
'''


def shop_app(proj: DocProject, tasks: bool) -> None:
    """The reader's ``shop`` app the docs talk about (models; ``tasks`` unless the doc shows it)."""
    proj.add_package("shop")
    (proj.tmp / "shop" / "models.py").write_text(SHOP_MODELS)
    if tasks:
        (proj.tmp / "shop" / "tasks.py").write_text(SHOP_TASKS)


def shop_tables(proj: DocProject, create: bool) -> ModuleType:
    from django.apps import apps
    from django.db import connection

    models = [apps.get_model("shop", "Organization"), apps.get_model("shop", "Order")]
    with connection.schema_editor() as editor:
        for model in models if create else reversed(models):
            (editor.create_model if create else editor.delete_model)(model)
    import shop.models

    return shop.models


def shop_request(proj: DocProject, org: Any) -> Any:
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    request = RequestFactory().post("/checkout/", {"item": "lamp"})
    request.user = User.objects.create(username=f"doc-{org.pk}")
    request.user.organization = org
    return request


# --------------------------------------------------------------------------- README.md


def readme_setup(proj: DocProject) -> dict[str, Any]:
    return {"request": SimpleNamespace(user=SimpleNamespace(organization=Tenant("org:3"))), "org": Tenant("org:9")}


def readme_after_worker(proj: DocProject) -> None:
    users = proj.stats()["users"]
    assert users["org:3"]["completed"] >= 1, users
    handle = proj.namespace["handle"]  # the README's own handle, waited for as its comment says
    assert handle.wait(timeout=10) == {"order_id": 7, "status": "processed"}
    assert handle.status == "SUCCESSFUL"
    import fairque_django

    assert fairque_django.result(handle.id, user="org:7").return_value == {"order_id": 7, "status": "processed"}


# --------------------------------------------------------------------------- docs/quickstart.md


def quickstart_setup(proj: DocProject) -> dict[str, Any]:
    shop_app(proj, tasks=False)
    return {}


def quickstart_after_module(proj: DocProject, name: str, module: ModuleType) -> None:
    if name != "shop.views":
        return
    from fairque_django.middleware import FairQueueTenantMiddleware

    models = shop_tables(proj, create=True)
    proj.spec.state["tables"] = True
    org = models.Organization.objects.create(name="Acme")
    FairQueueTenantMiddleware(module.checkout)(shop_request(proj, org))  # the view, as Django calls it


def quickstart_after_worker(proj: DocProject) -> None:
    import shop.models

    assert [o.status for o in shop.models.Order.objects.all()] == ["processed"]


def quickstart_teardown(proj: DocProject) -> None:
    if proj.spec.state.pop("tables", False):
        shop_tables(proj, create=False)


# --------------------------------------------------------------------------- docs/tenancy.md


def tenancy_setup(proj: DocProject) -> dict[str, Any]:
    shop_app(proj, tasks=True)
    proj.apply()
    models = shop_tables(proj, create=True)
    proj.spec.state["tables"] = True
    organization = models.Organization.objects.create(pk=7, name="Acme")
    order = models.Order.objects.create(organization=organization, item="lamp")
    import shop.tasks

    proj.task_names.add("shop.tasks.process_order")
    return {"organization": organization, "order": order, "Order": models.Order,
            "process_order": shop.tasks.process_order}


def tenancy_after_worker(proj: DocProject) -> None:
    import shop.models

    assert {o.status for o in shop.models.Order.objects.all()} == {"processed"}


# --------------------------------------------------------------------------- docs/tasks-backend.md


def backend_after_worker(proj: DocProject) -> None:
    result = proj.namespace["result"]
    done = proj.namespace["send_welcome"].get_result(result.id)
    assert done.status.name == "SUCCESSFUL" and done.return_value == "sent on attempt 1", done


# --------------------------------------------------------------------------- docs/settings.md


def settings_before(proj: DocProject, scope: dict[str, Any]) -> None:
    """``CONFIG_FILE``: the file it names holds the configuration shown above it, in YAML."""
    fairque = scope.get("FAIRQUE", {})
    if "CONFIG_FILE" in fairque:
        before = proj.current("FAIRQUE")
        data = {"redis": {"url": REDIS_URL}, "workers": before["workers"], "queue": before.get("queue", {})}
        (proj.tmp / fairque["CONFIG_FILE"]).write_text(yaml.safe_dump(data))


# --------------------------------------------------------------------------- docs/monitoring.md


class Pager:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message: str) -> None:
        self.sent.append(message)


def monitoring_after_module(proj: DocProject, name: str, module: ModuleType) -> None:
    from django.test import Client, override_settings

    with override_settings(ROOT_URLCONF=name):
        response = Client().get("/fairque/health")
    assert response.status_code in (200, 503), response
    proj.spec.state["health"] = response.json()


def monitoring_after_code(proj: DocProject, line: int) -> None:
    receiver = proj.namespace.get("page_on_call")
    if receiver is None or "page_on_call" in proj.spec.state:
        return
    from fairque_django.signals import fairque_alert

    proj.spec.state["page_on_call"] = receiver
    rule = SimpleNamespace(name="dlq-growing", severity="critical")
    fairque_alert.send(sender=None, rule=rule, state="firing", details={"message": "130 dead"})
    assert proj.namespace["pager"].sent == ["dlq-growing firing: 130 dead"]


def monitoring_teardown(proj: DocProject) -> None:
    from fairque_django.signals import fairque_alert

    receiver = proj.spec.state.pop("page_on_call", None)
    if receiver is not None:
        fairque_alert.disconnect(receiver)


def monitoring_json(proj: DocProject, data: Any) -> None:
    real = proj.spec.state["health"]
    assert set(data) <= set(real) | {"reason"} and set(real) - {"reason"} <= set(data), (data, real)


def check_paths_yaml(proj: DocProject, data: Any) -> None:
    """Prometheus / Kubernetes YAML: the paths and commands they name exist."""
    from django.core.management import get_commands
    from django.urls import resolve

    text = yaml.safe_dump(data)
    for path in re.findall(r"(?:metrics_path|path): (/\S+)", text):
        resolve(path, urlconf="urls" if "urls" in proj.modules else "tests.urls")
    for command in re.findall(r"manage\.py\s*-?\s*(\w+)", text.replace("\n", " ")):
        assert command in get_commands(), command


SPECS: dict[str, DocSpec] = {
    "README.md": DocSpec(setup=readme_setup, after_worker=readme_after_worker),
    "docs/quickstart.md": DocSpec(setup=quickstart_setup, after_module=quickstart_after_module,
                                  after_worker=quickstart_after_worker, teardown=quickstart_teardown,
                                  in_process_worker=True),
    "docs/tenancy.md": DocSpec(setup=tenancy_setup, after_worker=tenancy_after_worker, teardown=quickstart_teardown),
    "docs/tasks-backend.md": DocSpec(setup=readme_setup, after_worker=backend_after_worker),
    "docs/settings.md": DocSpec(before_settings=settings_before),
    "docs/monitoring.md": DocSpec(setup=lambda proj: {"pager": Pager()}, after_module=monitoring_after_module,
                                  after_code=monitoring_after_code, teardown=monitoring_teardown,
                                  check_json=monitoring_json, check_yaml=check_paths_yaml),
    "docs/operations.md": DocSpec(check_yaml=check_paths_yaml),
    "example_project/README.md": DocSpec(worker_serves=False),
}
