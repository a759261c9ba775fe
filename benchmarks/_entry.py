"""What the ``bench_*.py`` command lines share: run one scenario module of ``benchmarks/scenarios/``.

Throughput, fairness, as_users and limits need the peers (RQ, Huey, Celery, matplotlib): started
with another interpreter, they re-run themselves with the benchmarks' own virtualenv when it exists
(``python3 benchmarks/peers_env.py`` creates it). A benchmark reports numbers and never fails the
build: the exit code is 0 whatever they are (2 for a bad option).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS_PY = ROOT / "benchmarks" / ".venv-peers" / "bin" / "python"
NEEDS_PEERS = {"throughput", "fairness", "as_users", "limits"}


def run(name: str) -> None:
    if (name in NEEDS_PEERS and PEERS_PY.exists() and not os.environ.get("BENCH_NO_REEXEC")
            and Path(sys.prefix).resolve() != PEERS_PY.parent.parent.resolve()):
        print(f"re-running with the peers' virtualenv {PEERS_PY}", flush=True)
        os.environ["BENCH_NO_REEXEC"] = "1"
        os.execv(str(PEERS_PY), [str(PEERS_PY), sys.argv[0], *sys.argv[1:]])
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = importlib.import_module(f"benchmarks.scenarios.{name}")
    try:
        (getattr(module, "cli", None) or module.main)()
    except SystemExit as exc:  # --help, or a bad option (argparse has said why)
        sys.exit(exc.code if isinstance(exc.code, int) and exc.code else 0)
    except BaseException:  # report, never fail the build
        traceback.print_exc()
    sys.exit(0)
