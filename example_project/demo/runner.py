"""The demo proper: runs in the child ``manage.py fairque_demo`` whose settings already point at
the demo's Redis, key prefix and SQLite file (see the command's module for the launcher).

Two ``runfairworker`` processes serve a flood of one organisation and a few tasks of light ones,
first with fairque (one queue per organisation), then with the same tasks under ONE user id (first
come, first served); the report compares the waits; last, an order goes through the shop's view
and its two tasks hand data over through XCom.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from shop.models import Order, Organization
from shop.tasks import demo_work, order_key

from fairque_django import xcom_pull
from fairque_django.caches import redis_display_url
from fairque_django.conf import get_queue
from fairque_django.core.queue import TaskQueue
from fairque_django.core.worker import worker_health
from fairque_django.enqueuing import enqueue_many
from fairque_django.management.commands.fairque_stats import format_table

DEMO_PREFIX = "fqdemo"
WORKERS = ("worker-001", "worker-002")
FIFO_USER = "org:fifo-baseline"  # matches the workers' steal pattern "org:*", owned by neither
NAMES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
         "Soylent", "Massive", "Vandelay", "Dunder", "Gringotts", "Oscorp")


def manage_command(*args: str) -> list[str]:
    """The command line of ``manage.py <args>`` for this project."""
    base = getattr(settings, "BASE_DIR", None)
    manage = Path(base) / "manage.py" if base is not None else None
    if manage is not None and manage.exists():
        return [sys.executable, str(manage), *args]
    return [sys.executable, "-m", "django", *args]


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def ms(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


@dataclass
class RunResult:
    """One scenario: per organisation (label), its waits (ms) and when its last task finished (s)."""

    name: str
    seconds: float
    waits: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    last_done: dict[str, float] = field(default_factory=dict)
    per_worker: Counter[str] = field(default_factory=Counter)
    users: Counter[str] = field(default_factory=Counter)

    def all_waits(self, labels: Sequence[str]) -> list[float]:
        return [w for label in labels for w in self.waits[label]]


@dataclass
class WorkerProcess:
    worker_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: TextIO

    def tail(self, lines: int = 25) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(f"    {line}" for line in text[-lines:]) or "    (no output)"


class Demo:
    """The demo proper (runs in the child process, whose settings already point at the demo's Redis)."""

    def __init__(self, command: BaseCommand, options: dict[str, Any]) -> None:
        self.out = command.stdout
        self.opt = options
        self.tmp = Path(os.environ.get("FAIRQUE_DEMO_TMP") or tempfile.mkdtemp(prefix="fairque-demo-"))
        self.queue: TaskQueue = get_queue()
        self.workers: list[WorkerProcess] = []
        self.open_line = False  # a "step ..." line waits for its result

    # --- orchestration ------------------------------------------------------------------------------
    def run(self) -> None:
        started = time.monotonic()
        self.prepare_redis()
        call_command("migrate", verbosity=0, interactive=False)
        noisy, lights = self.create_organisations()
        self.header(noisy, lights)
        try:
            self.start_workers()
            fair = self.scenario("fair", "[1/3] fairque: one queue per organisation, served round-robin",
                                 noisy, lights, shared_user=None)
            fifo = self.scenario("fifo", f"[2/3] FIFO baseline: the same tasks in ONE queue ({FIFO_USER})",
                                 noisy, lights, shared_user=FIFO_USER)
            xcom_lines = self.xcom_pair(lights)
        except BaseException as exc:
            if self.open_line:
                self.out.write(" interrupted" if isinstance(exc, KeyboardInterrupt) else " failed")
            if isinstance(exc, KeyboardInterrupt):
                raise CommandError("interrupted; the workers were stopped", returncode=130) from None
            raise
        finally:
            self.stop_workers()
        self.check_nothing_failed()
        self.report(noisy, lights, fair, fifo)
        self.out.write("")
        for line in xcom_lines:
            self.out.write(line)
        self.out.write(f"\nDemo finished in {time.monotonic() - started:.1f} s.")

    def step(self, text: str) -> None:
        self.out.write(text, ending="")
        self.out.flush()
        self.open_line = True

    def done(self, text: str) -> None:
        self.out.write(text)
        self.open_line = False

    def prepare_redis(self) -> None:
        if self.queue.config.queue.stats_prefix != DEMO_PREFIX:  # never clean a real queue's keys
            raise CommandError(f"the demo's settings must use the key prefix {DEMO_PREFIX!r} "
                               "(FAIRQUE_KEY_PREFIX); run it as: manage.py fairque_demo")
        client = self.queue.client
        try:
            client.ping()
        except Exception as exc:  # any connection problem means the same here
            raise CommandError(f"Redis at {redis_display_url(client)} does not answer: {exc}") from exc
        pattern = f"{self.queue.keys.base}:*"
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)

    def create_organisations(self) -> tuple[Any, list[Any]]:
        Order.objects.all().delete()
        Organization.objects.all().delete()
        noisy = Organization.objects.create(name="Noisy Corp", slug="noisy-corp")
        lights = [Organization.objects.create(name=name, slug=name.lower())
                  for name in NAMES[: self.opt["light"]]]
        return noisy, lights

    def header(self, noisy: Any, lights: list[Any]) -> None:
        o = self.opt
        title = f"fairque demo: one noisy organisation and {len(lights)} light ones, 2 worker processes"
        self.out.write(f"{title}\n{'=' * len(title)}")
        rows = [
            ("Redis", f"{redis_display_url(self.queue.client)}, keys under {self.queue.keys.base} "
                      "(deleted first; no other key touched)"),
            ("Database", f"{settings.DATABASES['default']['NAME']} (fresh, migrated)"),
            ("Workers", f"{WORKERS[0]} serves the odd-numbered organisations first, {WORKERS[1]} the even ones;"),
            ("", "each steals from the other's when its own have nothing ready"),
            ("", f"(manage.py runfairworker, {o['concurrency']} task slot(s) each)"),
            ("Load", f"{noisy.name} ({noisy.fairque_user_id}) floods {o['heavy']:,} tasks, then {len(lights)} "
                     f"light organisations submit {o['per_light']} each;"),
            ("", f"every task works {o['task_ms']:g} ms and records how long it waited since it was enqueued"),
        ]
        for key, value in rows:
            self.out.write(f"{key:<9} {value}")
        self.out.write("")

    # --- workers ------------------------------------------------------------------------------------
    def start_workers(self) -> None:
        for wid in WORKERS:
            log_path = self.tmp / f"{wid}.log"
            log = open(log_path, "w")  # noqa: SIM115 - closed in stop_workers
            # A session of their own: a Ctrl-C reaches only this process, which stops them in order.
            proc = subprocess.Popen(
                manage_command("runfairworker", wid, "--concurrency", str(self.opt["concurrency"]),
                               "--loglevel", "WARNING"),
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
            self.workers.append(WorkerProcess(wid, proc, log_path, log))
        self.wait_for("the workers to start", 60, lambda: all(
            (r := worker_health(self.queue, w.worker_id)) is not None and r["pid"] == w.proc.pid
            for w in self.workers))

    def stop_workers(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            w.log.close()

    def check_workers(self) -> None:
        for w in self.workers:
            if w.proc.poll() is not None:
                raise CommandError(f"worker {w.worker_id} exited with code {w.proc.returncode}; its output:\n"
                                   f"{w.tail()}")

    def wait_for(self, what: str, timeout: float, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.check_workers()
            if time.monotonic() > deadline:
                logs = "\n".join(f"  {w.worker_id}:\n{w.tail()}" for w in self.workers)
                raise CommandError(f"gave up waiting for {what} after {timeout:g} s; worker output:\n{logs}")
            time.sleep(0.02)

    # --- the two runs -------------------------------------------------------------------------------
    def scenario(self, run: str, title: str, noisy: Any, lights: list[Any], *, shared_user: str | None
                 ) -> RunResult:
        o = self.opt
        total = o["heavy"] + len(lights) * o["per_light"]
        key = f"{self.queue.keys.base}:demo:{run}"
        self.step(f"{title} ...")

        def tasks(org: Any, n: int) -> list[Any]:
            return [demo_work.create_task((run, org.fairque_user_id, o["task_ms"])) for _ in range(n)]

        flood = tasks(noisy, o["heavy"])
        t0 = time.time()
        enqueue_many(flood, user=shared_user or noisy, on_commit=False)
        for org in lights:
            enqueue_many(tasks(org, o["per_light"]), user=shared_user or org, on_commit=False)
        self.wait_for(f"the {run} run's {total:,} tasks", o["timeout"],
                      lambda: int(self.queue.client.llen(key)) >= total)
        result = RunResult(run, time.time() - t0)
        for raw in self.queue.client.lrange(key, 0, -1):
            label, user, waited, ended, worker = json.loads(raw)
            result.waits[label].append(float(waited))
            result.last_done[label] = max(result.last_done.get(label, 0.0), float(ended) - t0)
            result.per_worker[worker] += 1
            result.users[user] += 1
        expected = {FIFO_USER: total} if shared_user else {
            org.fairque_user_id: n for org, n in [(noisy, o["heavy"]), *((org, o["per_light"]) for org in lights)]}
        if dict(result.users) != expected:
            raise CommandError(f"the {run} run's tasks ran for the wrong users: {dict(result.users)}")
        split = ", ".join(f"{w} ran {n:,}" for w, n in sorted(result.per_worker.items()))
        self.done(f" {total:,} tasks in {result.seconds:.1f} s ({split})")
        return result

    # --- XCom ---------------------------------------------------------------------------------------
    def xcom_pair(self, lights: list[Any]) -> list[str]:
        from django.test import Client
        org, other = lights[0], lights[1 % len(lights)]
        self.step(f"[3/3] XCom: an order of {org.name} through the example's view and its two tasks ...")
        response = Client().post("/orders/", {"item": "blue widget", "quantity": 3},
                                 headers={"X-Organization": org.slug})
        if response.status_code != 202:
            raise CommandError(f"POST /orders/ answered {response.status_code}: {response.content[:300]!r}")
        body = response.json()
        order_id = body["order_id"]
        self.wait_for("the order to be confirmed", 30,
                      lambda: Order.objects.filter(pk=order_id, status=Order.Status.CONFIRMED).exists())
        order = Order.objects.get(pk=order_id)
        key = order_key(order_id)
        with self.queue:
            mine = xcom_pull(key, user_id=org.fairque_user_id)
            theirs = xcom_pull(key, user_id=other.fairque_user_id)
        self.done(" done")
        heading = f"XCom: a task pair for {org.name} ({org.fairque_user_id})"
        return [
            heading,
            "-" * len(heading),
            f"  POST /orders/ with X-Organization: {org.slug}  ->  {response.status_code}, process_order queued "
            f"for tenant {body['tenant']} (task {body['task_id'][:8]})",
            f"  process_order      pushed XCom {key!r} = {json.dumps(mine)}",
            f"  send_confirmation  pulled it and confirmed the order: {order.confirmation!r}",
            f"  {other.name} ({other.fairque_user_id}) reading {key!r} gets {theirs!r}: XCom values never cross "
            "tenants",
        ]

    def check_nothing_failed(self) -> None:
        stats = self.queue.get_stats()
        if stats["tasks_failed"] or stats["dlq_size"]:
            raise CommandError(f"{stats['tasks_failed']} task attempt(s) failed and {stats['dlq_size']} task(s) "
                               "are dead; see manage.py fairque_dlq list")

    # --- report -------------------------------------------------------------------------------------
    def report(self, noisy: Any, lights: list[Any], fair: RunResult, fifo: RunResult) -> None:
        light_ids = [org.fairque_user_id for org in lights]
        rows: list[list[str]] = []

        def row(name: str, tenant: str, waits_f: list[float], waits_b: list[float], done_f: float,
                done_b: float) -> list[str]:
            return [name, tenant, f"{len(waits_f):,}", ms(percentile(waits_f, 50)), ms(percentile(waits_f, 95)),
                    ms(max(waits_f)), f"{done_f:.2f} s", "", ms(percentile(waits_b, 50)),
                    ms(percentile(waits_b, 95)), f"{done_b:.2f} s"]

        for org in [noisy, *lights]:
            uid = org.fairque_user_id
            rows.append(row(org.name, uid, fair.waits[uid], fifo.waits[uid], fair.last_done[uid],
                            fifo.last_done[uid]))
        light_f, light_b = fair.all_waits(light_ids), fifo.all_waits(light_ids)
        rows.append(row("all light organisations", "", light_f, light_b,
                        max(fair.last_done[u] for u in light_ids), max(fifo.last_done[u] for u in light_ids)))
        heads = ["organisation", "tenant", "tasks", "p50", "p95", "max", "last done", "|", "p50", "p95",
                 "last done"]
        table = format_table(heads, rows, right=(2, 3, 4, 5, 6, 8, 9, 10)).splitlines()
        width = len(table[0])
        bar = table[0].index("|")
        fair_col = table[0].index("p50") - 1
        title = "Wait from enqueue to start, in ms (last done: when its last task finished, after the flood)"
        line = " " * fair_col + "fairque".center(bar - fair_col) + " " + "first come, first served (FIFO)"
        self.out.write("")
        self.out.write(title)
        self.out.write(line.rstrip())
        self.out.write(table[0].replace("|", " "))
        self.out.write("  " + "-" * (width - 2))
        for text in table[1:-1]:
            self.out.write(text)
        self.out.write("  " + "-" * (width - 2))
        self.out.write(table[-1])
        p95_f, p95_b = percentile(light_f, 95), percentile(light_b, 95)
        ratio = p95_b / p95_f if p95_f > 0 else float("inf")
        self.out.write("")
        self.out.write(f"=> Light organisations waited {ms(p95_f)} ms (p95; median {ms(percentile(light_f, 50))} ms) "
                       f"with fairque instead of {ms(p95_b)} ms (median {ms(percentile(light_b, 50))} ms) first come, "
                       f"first served: {ratio:,.0f}x sooner.")
        uid = noisy.fairque_user_id
        self.out.write(f"   {noisy.name} still got every slot nobody else needed: its {len(fair.waits[uid]):,} tasks "
                       f"were all done after {fair.last_done[uid]:.2f} s (FIFO: {fifo.last_done[uid]:.2f} s).")
