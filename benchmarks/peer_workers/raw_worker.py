"""The ceiling: a minimal redis-py worker, BRPOP a JSON message and run its task body.

    python -m benchmarks.peer_workers.raw_worker [--queue bench:raw]

Messages are ``{"id": hex, "f": "noop" | "record" | "sleep", "a": [args]}`` (see :func:`message`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import uuid
from typing import Any

from . import common

QUEUE = "bench:raw"
BODIES = {"noop": common.noop_body, "record": common.record_body, "sleep": common.sleep_body}


def message(func: str, *args: Any) -> str:
    """What a minimal queue stores: an id, the task's name and its arguments, as JSON."""
    return json.dumps({"id": uuid.uuid4().hex, "f": func, "a": list(args)}, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queue", default=QUEUE)
    ap.add_argument("--timeout", type=float, default=1.0, help="BRPOP timeout (s)")
    args = ap.parse_args(argv)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    r = common.client()
    brpop, loads = r.brpop, json.loads
    while not stop:
        item = brpop([args.queue], timeout=args.timeout)
        if item is None:
            continue
        msg = loads(item[1])
        BODIES[msg["f"]](*msg["a"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
