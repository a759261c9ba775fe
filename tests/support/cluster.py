"""A real Redis Cluster on loopback ports for the tests: masters (and optional replicas) started from
``redis-server --cluster-enabled yes``, slots split evenly, joined with CLUSTER MEET, replicas
attached with CLUSTER REPLICATE; it waits until every node says ``cluster_state:ok``."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from example_project.embedded_redis import start_server
from tests.support.wait import eventually

SLOTS = 16384


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too (so it must be below 55536)."""
    for _ in range(200):
        port = random.randrange(20000, 45000)
        if all(_free(p) for p in (port, port + 10000)):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def node_client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=2)


def info_field(text: bytes | str, name: str) -> str:
    """A field of a ``CLUSTER INFO`` reply."""
    for line in (text.decode() if isinstance(text, bytes) else text).splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return ""


@dataclass
class Node:
    port: int
    proc: subprocess.Popen[bytes]
    dir: str
    node_id: str = ""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def client(self) -> redis.Redis:
        return node_client(self.port)


@dataclass
class Cluster:
    """The nodes of a test cluster (``masters`` first, then their replicas in the same order)."""

    masters: list[Node]
    replicas: list[Node] = field(default_factory=list)

    @property
    def nodes(self) -> list[Node]:
        return [*self.masters, *self.replicas]

    @property
    def startup_nodes(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.masters]

    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.masters[0].port}/"

    def state_ok(self, nodes: Sequence[Node] | None = None) -> bool:
        for node in nodes if nodes is not None else [n for n in self.nodes if n.alive]:
            try:
                with node.client() as c:
                    if info_field(c.execute_command("CLUSTER", "INFO"), "cluster_state") != "ok":
                        return False
            except redis.RedisError:
                return False
        return True

    def owner(self, slot: int) -> Node:
        """The live node serving ``slot`` as a master (by what a live node says)."""
        for node in self.nodes:
            if not node.alive:
                continue
            with contextlib.suppress(redis.RedisError), node.client() as c:
                for lo, hi, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                    if lo <= slot <= hi:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no live node knows slot {slot}")

    def replica_of(self, master: Node) -> Node:
        for node in self.replicas:
            if node.alive:
                with node.client() as c:
                    if c.info("replication").get("master_port") == master.port:
                        return node
        raise RuntimeError(f"master {master.port} has no replica")

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                node.proc.terminate()
        for node in self.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=5)
            if node.alive:
                node.proc.kill()
                node.proc.wait(timeout=5)
            shutil.rmtree(node.dir, ignore_errors=True)


def start_cluster(masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000,
                  extra: Sequence[str] = (), timeout: float = 30.0) -> Cluster:
    """Start ``masters`` cluster-enabled masters (``replicas`` replicas each), split the slots between
    the masters, join them and wait for ``cluster_state:ok`` on every node. ``extra``: more
    redis-server options for every node (e.g. ``--appendonly yes``)."""
    started: list[Node] = []

    def start() -> Node:
        port = cluster_port()
        proc, port, workdir = start_server(port, "--cluster-enabled", "yes", "--cluster-config-file",
                                           f"nodes-{port}.conf", "--cluster-node-timeout", str(node_timeout_ms),
                                           *extra)
        node = Node(port, proc, workdir)
        started.append(node)
        with node.client() as c:
            node.node_id = c.execute_command("CLUSTER", "MYID").decode()
        return node

    try:
        cluster = Cluster([start() for _ in range(masters)])
        cluster.replicas = [start() for _ in range(masters * replicas)]
        bounds = [SLOTS * i // masters for i in range(masters + 1)]
        for node, lo, hi in zip(cluster.masters, bounds, bounds[1:], strict=False):
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi))
        first = cluster.masters[0]
        for node in cluster.nodes[1:]:
            with node.client() as c:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)

        def every_node_knows_every_node() -> bool:
            for node in cluster.nodes:
                with node.client() as c:
                    if len(c.execute_command("CLUSTER", "NODES").decode().strip().splitlines()) < len(cluster.nodes):
                        return False
            return True

        eventually(every_node_knows_every_node, timeout=timeout, interval=0.1, what="the cluster nodes to meet")
        for i, replica in enumerate(cluster.replicas):
            master = cluster.masters[i % masters]
            with replica.client() as c:
                c.execute_command("CLUSTER", "REPLICATE", master.node_id)
        eventually(cluster.state_ok, timeout=timeout, interval=0.1, what="the cluster to form")
        if cluster.replicas:
            def replicas_in_sync() -> bool:
                for replica in cluster.replicas:
                    with replica.client() as c:
                        if c.info("replication").get("master_link_status") != "up":
                            return False
                return True

            eventually(replicas_in_sync, timeout=timeout, interval=0.1, what="the replicas to sync")
        return cluster
    except BaseException:
        Cluster(started).stop()
        raise
