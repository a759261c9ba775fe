"""A throw-away Redis Cluster on loopback ports, for the tests and the benchmarks (neither imports
the other; both import this, as ``example_project.embedded_cluster``). Not part of the reusable app.

Two levels:

- :func:`start_cluster`: starts the nodes itself (``redis-server --cluster-enabled yes`` through
  :func:`embedded_redis.start_server`), optional replicas, and returns a :class:`Cluster` to stop,
  query (which node serves a slot) and fail over; the tests use it.
- :func:`cluster_node_args`, :func:`cluster_port`, :func:`form_cluster` and :func:`slot_owner`: the
  pieces for nodes someone else starts (the benchmarks start theirs under their process manager,
  with a password): the options that make a redis-server a cluster node, a port whose cluster-bus
  port is free too, and joining started nodes into a cluster (slots split evenly in ranges, as
  ``redis-cli --cluster create`` splits them; CLUSTER MEET; CLUSTER REPLICATE; waiting until every
  node says ``cluster_state:ok`` and every replica is in sync).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import redis

from example_project.embedded_redis import start_server

SLOTS = 16384


def cluster_port() -> int:
    """A free loopback port whose cluster-bus port (+10000) is free too (so it must be below 55536)."""
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


def cluster_node_args(port: int, node_timeout_ms: int) -> list[str]:
    """The redis-server options that make the server on ``port`` a cluster node (with a password,
    add ``--masterauth`` too, for its replicas)."""
    return ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", str(node_timeout_ms)]


def node_client(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(port=port, password=password, socket_timeout=5, socket_connect_timeout=2)


def info_field(text: bytes | str, name: str) -> str:
    """A field of a ``CLUSTER INFO`` reply."""
    for line in (text.decode() if isinstance(text, bytes) else text).splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return ""


def slot_owner(client: redis.Redis, slot: int) -> int | None:
    """The port of the master serving ``slot``, as the node of ``client`` sees it (None: it knows none)."""
    for lo, hi, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if int(lo) <= slot <= int(hi):
            return int(master[1])
    return None


def slot_ranges(masters: int, pinned: Mapping[int, int] | None = None) -> list[list[int]]:
    """The slots of each of ``masters`` masters: even ranges, except the ``pinned`` slots (slot ->
    master index), given to another master than their range's (as ``redis-cli --cluster reshard``
    could move them)."""
    pinned = pinned or {}
    bounds = [SLOTS * i // masters for i in range(masters + 1)]
    owned = [[slot for slot in range(lo, hi) if slot not in pinned] for lo, hi in itertools.pairwise(bounds)]
    for slot, index in pinned.items():
        owned[index].append(slot)
    return owned


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def form_cluster(masters: Sequence[int], replicas: Sequence[int] = (), *, password: str | None = None,
                 pinned: Mapping[int, int] | None = None, timeout: float = 30.0) -> None:
    """Join started cluster nodes (their ports) into one cluster: the slots split between the
    ``masters`` (:func:`slot_ranges`), every node met, ``replicas`` attached to the masters in turn;
    returns once every node says ``cluster_state:ok`` and every replica's link is up."""
    clients = {port: node_client(port, password) for port in [*masters, *replicas]}
    try:
        for port, slots in zip(masters, slot_ranges(len(masters), pinned), strict=True):
            clients[port].execute_command("CLUSTER", "ADDSLOTS", *slots)
        for port in [*masters[1:], *replicas]:
            clients[port].execute_command("CLUSTER", "MEET", "127.0.0.1", masters[0])

        def every_node_knows_every_node() -> bool:
            return all(len(c.execute_command("CLUSTER", "NODES").decode().strip().splitlines()) >= len(clients)
                       for c in clients.values())

        _wait(every_node_knows_every_node, timeout, "the cluster nodes to meet")
        for i, port in enumerate(replicas):
            master_id = clients[masters[i % len(masters)]].execute_command("CLUSTER", "MYID").decode()
            clients[port].execute_command("CLUSTER", "REPLICATE", master_id)

        def state_ok() -> bool:
            return all(info_field(c.execute_command("CLUSTER", "INFO"), "cluster_state") == "ok"
                       for c in clients.values())

        _wait(state_ok, timeout, "the cluster to form")

        def replicas_in_sync() -> bool:
            return all(clients[port].info("replication").get("master_link_status") == "up" for port in replicas)

        _wait(replicas_in_sync, timeout, "the replicas to sync")
    finally:
        for client in clients.values():
            client.close()


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
    """The nodes of a cluster started by :func:`start_cluster` (``masters`` first, then their
    replicas in the same order)."""

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
                port = slot_owner(c, slot)
                if port is not None:
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
    """Start ``masters`` cluster-enabled masters (``replicas`` replicas each) and join them
    (:func:`form_cluster`). ``extra``: more redis-server options for every node (e.g.
    ``--appendonly yes``). The caller stops it (:meth:`Cluster.stop`)."""
    started: list[Node] = []

    def start() -> Node:
        port = cluster_port()
        proc, port, workdir = start_server(port, *cluster_node_args(port, node_timeout_ms), *extra)
        node = Node(port, proc, workdir)
        started.append(node)
        with node.client() as c:
            node.node_id = c.execute_command("CLUSTER", "MYID").decode()
        return node

    try:
        cluster = Cluster([start() for _ in range(masters)])
        cluster.replicas = [start() for _ in range(masters * replicas)]
        form_cluster([n.port for n in cluster.masters], [n.port for n in cluster.replicas], timeout=timeout)
        return cluster
    except BaseException:
        Cluster(started).stop()
        raise
