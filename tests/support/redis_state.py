"""What the Redis server itself says about the test database (public Redis commands only)."""

from __future__ import annotations

import redis


def blocked_clients(client: redis.Redis) -> int:
    """Connections to ``client``'s database blocked in a command (BLPOP...) right now. Other
    databases of the server (other test runs) do not count."""
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    return sum(1 for c in client.client_list() if str(c.get("db")) == db and "b" in str(c.get("flags", "")))
