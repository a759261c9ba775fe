"""One fairque_django worker process: ``python -m benchmarks.fairness_workers.fairque_worker ID CONFIG.json``.

Runs the core :class:`~fairque_django.core.worker.Worker` exactly as ``runfairworker`` would
(no Django settings needed for the benchmark): one worker id from the configuration, the
configured concurrency, the default poll interval, this package's task module.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.worker import Worker

from .common import mark_ready


def main() -> int:
    worker_id, config_path = sys.argv[1], sys.argv[2]
    logging.basicConfig(level=os.environ.get("FB_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with open(config_path, encoding="utf-8") as handle:
        data = json.load(handle)
    config = FairQueueConfig.from_dict(data, worker_id=worker_id)
    # FB_PREFETCH=0 measures slots without prefetching (the default has it on for short tasks)
    worker = Worker(config, worker_id=worker_id, task_modules=["benchmarks.fairness_workers.tasks"],
                    prefetch=os.environ.get("FB_PREFETCH", "1") == "1")
    mark_ready()
    return worker.start()


if __name__ == "__main__":
    sys.exit(main())
