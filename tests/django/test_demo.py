"""The example project, end to end in subprocesses (its own settings, the test Redis):
``manage.py check``, the order view enqueueing for the request's organisation, and the demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import redis

from tests.support.processes import ROOT
from tests.support.redis_url import REDIS_URL

MANAGE = ROOT / "example_project" / "manage.py"
# Environment the example project reads; the test run's own values must not leak into it.
_OURS = ("DJANGO_SETTINGS_MODULE", "FAIRQUE_KEY_PREFIX", "FAIRQUE_EXAMPLE_DB", "FAIRQUE_DEMO_CHILD",
         "FAIRQUE_DEMO_TMP", "FAIRQUE_DEMO_REDIS_URL")


def example_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OURS}
    env.update({"FAIRQUE_REDIS_URL": REDIS_URL, "PYTHONUNBUFFERED": "1", **extra})
    return env


def manage(*args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MANAGE), *args], cwd=ROOT, env=example_env(**extra),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def test_example_project_passes_checks(tmp_path: Path) -> None:
    res = manage("check", FAIRQUE_EXAMPLE_DB=str(tmp_path / "db.sqlite3"))
    assert res.returncode == 0, res.stderr
    assert "no issues" in res.stdout
    res = manage("makemigrations", "--check", "--dry-run", FAIRQUE_EXAMPLE_DB=str(tmp_path / "db.sqlite3"))
    assert res.returncode == 0, res.stdout + res.stderr


VIEW_SCRIPT = """
import json
from django.test import Client
from fairque_django.conf import get_queue
from shop.models import Organization

a = Organization.objects.create(name="A", slug="a")
b = Organization.objects.create(name="B", slug="b")
client = Client()
response = client.post("/orders/", {"item": "lamp", "quantity": 2}, headers={"X-Organization": "b"})
body = response.json()
queue = get_queue()
state = queue.get_task_state(body["task_id"]) or {}
print("RESULT", json.dumps({
    "status": response.status_code, "body": body, "a": a.fairque_user_id, "b": b.fairque_user_id,
    "task_user": state.get("u"), "depth_a": queue.user_depth(a.fairque_user_id),
    "depth_b": queue.user_depth(b.fairque_user_id), "prefix": queue.config.queue.stats_prefix,
    "no_org": client.post("/orders/").status_code,
    "unknown_org": client.post("/orders/", headers={"X-Organization": "zzz"}).status_code,
}))
"""

ORDER_SCRIPT = """
import json
from shop.models import Order
print("RESULT", json.dumps([[o.organization.slug, o.status, o.confirmation] for o in Order.objects.all()]))
"""


def result(res: subprocess.CompletedProcess[str]) -> object:
    assert res.returncode == 0, res.stdout + res.stderr
    line = next(line for line in res.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_view_enqueues_for_the_request_organisation(tmp_path: Path, redis_client: redis.Redis) -> None:
    env = {"FAIRQUE_EXAMPLE_DB": str(tmp_path / "db.sqlite3"), "FAIRQUE_KEY_PREFIX": "fqviewtest"}
    assert manage("migrate", "--noinput", **env).returncode == 0
    data = result(manage("shell", "-c", VIEW_SCRIPT, **env))
    assert isinstance(data, dict)
    assert data["status"] == 202 and data["prefix"] == "fqviewtest"
    assert data["body"]["tenant"] == data["b"] == data["task_user"]  # the organisation named by the request
    assert data["depth_b"] == {"critical": 0, "normal": 1, "live": 1}
    assert data["depth_a"] == {"critical": 0, "normal": 0, "live": 0}
    assert data["no_org"] == 400 and data["unknown_org"] == 404
    # a worker runs process_order, which hands the order over to send_confirmation through XCom
    worker = manage("runfairworker", "worker-001", "--burst", **env)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert result(manage("shell", "-c", ORDER_SCRIPT, **env)) == [
        ["b", "confirmed", "Order #1: 2 x lamp, total 19.98 - confirmed"]]


ROW = re.compile(r"^\s+(?P<name>.+?)\s+(?P<tenant>org:\d+)\s+(?P<tasks>[\d,]+)\s+(?P<p50>[\d.,]+)\s+"
                 r"(?P<p95>[\d.,]+)\s+(?P<max>[\d.,]+)\s+(?P<done>[\d.]+) s\s+(?P<fifo_p50>[\d.,]+)\s+"
                 r"(?P<fifo_p95>[\d.,]+)\s+(?P<fifo_done>[\d.]+) s$")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_demo_end_to_end(redis_client: redis.Redis) -> None:
    # FAIRQUE_DEMO_REDIS_URL wins over the project's FAIRQUE_REDIS_URL (here a port nothing listens on)
    res = manage("fairque_demo", "--heavy", "150", "--light", "4", "--per-light", "3", timeout=240,
                 FAIRQUE_DEMO_REDIS_URL=REDIS_URL, FAIRQUE_REDIS_URL="redis://127.0.0.1:1/0")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    # the target is said first, before the demo writes (or deletes) anything
    assert out.splitlines()[0] == (f"Redis target: {REDIS_URL} (from FAIRQUE_DEMO_REDIS_URL), key prefix {{fqdemo}}: "
                                   "the demo deletes every {fqdemo}:* key there first and touches no other key.")
    assert "--redis-url URL or FAIRQUE_DEMO_REDIS_URL=URL" in out.splitlines()[1]
    rows = {m["tenant"]: m for m in map(ROW.match, out.splitlines()) if m}
    assert set(rows) == {"org:1", "org:2", "org:3", "org:4", "org:5"}, out
    assert rows["org:1"]["name"] == "Noisy Corp" and number(rows["org:1"]["tasks"]) == 150
    noisy_p95 = number(rows["org:1"]["p95"])
    for tenant in ("org:2", "org:3", "org:4", "org:5"):
        assert number(rows[tenant]["tasks"]) == 3
        assert number(rows[tenant]["p95"]) < noisy_p95, out  # fair: light tenants do not wait for the flood
    assert "all light organisations" in out and "sooner" in out
    assert "send_confirmation  pulled it and confirmed the order: 'Order #1: 3 x blue widget" in out
    assert "gets None: XCom values never cross tenants" in out
    assert "Traceback" not in out + res.stderr
    # the demo keeps to its own key prefix
    assert redis_client.keys("{fqdemo}:*") and not redis_client.keys("{fq}:*")


def test_demo_redis_url_option_is_checked_before_anything_runs() -> None:
    res = manage("fairque_demo", "--redis-url", "http://127.0.0.1:6379/0", FAIRQUE_DEMO_REDIS_URL=REDIS_URL)
    assert res.returncode == 1
    assert "--redis-url must be a redis://, rediss:// or unix:// URL" in res.stderr
    assert "Redis target" not in res.stdout
