"""Reliability and security tests: crashes, Redis restarts and outages, bad input, model-based
and concurrency checks, tenant isolation and a load soak (see docs/reliability.md)."""
