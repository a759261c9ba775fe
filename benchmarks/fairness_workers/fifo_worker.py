"""The plain FIFO baseline: ``python -m benchmarks.fairness_workers.fifo_worker LIST_KEY``.

One Redis list for every tenant (the producer LPUSHes JSON, this worker BRPOPs it), one task
at a time, no acknowledgement: the least a Redis queue can do per task.
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType

from .common import client, mark_ready, run_task

_stop = False


def _on_term(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True


def main() -> int:
    key = sys.argv[1]
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    r = client()
    mark_ready()
    while not _stop:
        item = r.brpop([key], timeout=1)
        if item is None:
            continue
        job = json.loads(item[1])
        run_task(job["tenant"], job["idx"], job["t_enq"], job["sleep_ms"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
