"""Tasks, apps and worker entry points of the benchmarks' contenders (fairque_django and its peers).

Every contender runs the same task bodies (:mod:`.common`): ``noop`` counts its completion in
Redis, ``record`` stores the time it started, ``sleep_ms`` sleeps. The modules are imported both
by the producer (the benchmark process) and by the worker processes, so names, queues and Redis
settings come from the environment (``BENCH_REDIS_URL``) and never differ between the two sides.
"""
