"""Worker-side code of ``benchmarks/bench_fairness.py``: one module per contender.

Every contender runs the same task body (:func:`common.run_task`): sleep for the task's
duration and push one record ``tenant, index, enqueue time, start, end, worker`` onto the
Redis list :data:`common.RECORDS`, so all queues are measured the same way.
"""
