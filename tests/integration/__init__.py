"""The core against a real Redis: queues (sync and async), workers, results, the read model, a cluster."""
