"""The contenders of the benchmarks, one module each: fairque_django and its peers (Huey, RQ,
Celery), a raw redis-py BRPOP loop (the throughput ceiling, and the fairness benchmark's FIFO
baseline).

A contender's module is imported both by the benchmark process (the producer: how to enqueue,
how to start its worker) and by its worker processes (its tasks/app): everything that must agree
between the two sides (names, queues, the Redis URL from ``BENCH_REDIS_URL``) is defined there.
Every contender runs the same task bodies (:mod:`.bodies`); :mod:`.base` holds the two producer
interfaces (:class:`.base.System` for throughput/latency, :class:`.base.Contender` for the
fairness scenarios). Worker processes are started by the harness's one launcher
(:meth:`benchmarks.harness.procs.Processes.launch`).
"""
