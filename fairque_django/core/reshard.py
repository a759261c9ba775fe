"""Moving tenants between keyspace shards after ``queue.shards`` or ``queue.shard_pins`` changed.

A script only ever touches one shard, so a move is made of steps that are each safe to repeat
(:func:`move_tenant`): the tenant is paused in its old shard (no new lease there), its running
tasks finish there, then each queued or delayed task is pushed to the new shard under the same id
(a push of an id already there is a duplicate: nothing twice) and deleted from the old one (a task
whose lease expired there, its worker dead, is handed back first and moves too); its
runtime limits and pause go with it. A crash at any point leaves every task in one shard or in both
under one id, and running the move again finishes it. What a move leaves in the old shard (it is
reported): dead tasks (the DLQ reads every shard; requeue or purge them first when retiring a shard),
tasks waiting for a dependency, and the results and XCom values already written (they expire).
"""

from __future__ import annotations

import dataclasses
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from .codec import text
from .config import FairQueueConfig
from .models import Task
from .ops import Op, drive, run
from .queue import TaskQueue
from .shards import shard_map

__all__ = ["MoveReport", "holders", "misplaced", "move_tenant"]


@dataclass
class MoveReport:
    """What :func:`move_tenant` did."""

    user_id: str
    source: int
    target: int
    moved: int = 0
    left: dict[str, int] = field(default_factory=dict)  # what stays in the old shard: dead, waiting, leased


def layout(config: FairQueueConfig, shards: int | None) -> FairQueueConfig:
    """``config`` with ``shards`` keyspace shards (None: its own): the key names of a former layout."""
    if shards is None or shards == config.queue.shards:
        return config
    return dataclasses.replace(config, queue=dataclasses.replace(config.queue, shards=shards,
                                                                 shard_pins=types.MappingProxyType({})))


def holders(config: FairQueueConfig, client: redis.Redis, from_shards: int | None = None) -> dict[str, list[int]]:
    """Users with unfinished tasks -> the shards that hold them (each shard's live set), in the layout
    of ``from_shards`` shards (the former ``queue.shards``; None: the configuration's)."""
    source = layout(config, from_shards)
    found: dict[str, list[int]] = {}
    for shard in range(source.queue.shards):
        queue = TaskQueue(source, client, shard=shard)
        for user, count in client.zscan_iter(queue.keys.live):
            if float(count) > 0:
                found.setdefault(text(user), []).append(shard)
    return found


def misplaced(config: FairQueueConfig, client: redis.Redis,
              from_shards: int | None = None) -> list[tuple[str, int, int]]:
    """(user, a shard of the ``from_shards`` layout holding its unfinished tasks, the shard it belongs
    to now) for every user held by a keyspace other than its own. A shard's keyspace depends on the
    number of shards (its hash tag is salted to its share of the slots, see ``keys.shard_tags``), so
    after ``queue.shards`` changed every tenant outside shard 0 is misplaced."""
    mapping, old = shard_map(config.queue), shard_map(layout(config, from_shards).queue)
    return sorted((user, shard, mapping.of(user)) for user, held in holders(config, client, from_shards).items()
                  for shard in held if old.keys[shard].base != mapping.keys_of(user).base)


def move_tenant(config: FairQueueConfig, client: redis.Redis, user_id: str, source: int, *,
                from_shards: int | None = None, wait_seconds: float = 300.0, page: int = 500,
                poll_seconds: float = 0.2) -> MoveReport:
    """Move ``user_id``'s queued and delayed tasks, runtime limits and pause from shard ``source`` (of
    the ``from_shards`` layout: the former ``queue.shards``; None: the configuration's) to the shard
    the configuration gives it (see the module's docstring). Raises TimeoutError when its running
    tasks in the old shard outlast ``wait_seconds`` (it stays paused there: run it again)."""
    target = shard_map(config.queue).of(user_id)
    report = MoveReport(user_id, source, target)
    src, dst = TaskQueue(layout(config, from_shards), client, shard=source), TaskQueue(config, client, shard=target)
    if src.keys.base == dst.keys.base:
        return report
    state = src.get_tenant_limits(user_id)
    was_paused = bool(state["paused"]) and not _moving(client, src, user_id)
    if was_paused:
        dst.pause_tenant(user_id)
    runtime = {name: state[name] for name in ("concurrency", "rate", "burst")
               if state.get(f"{name}_source") == "runtime"}
    if runtime:
        dst.set_tenant_limits(user_id, **runtime)
    client.hset(src.keys.tenant_moving, user_id, "1")  # a repeated move knows the pause is its own
    src.pause_tenant(user_id)
    deadline = time.monotonic() + wait_seconds
    while src.get_tenant_limits(user_id)["leased"] > 0 and not _release_expired(client, src, user_id):
        if time.monotonic() > deadline:
            raise TimeoutError(f"tenant {user_id!r} still has running tasks in shard {source} after "
                               f"{wait_seconds:g} s; it stays paused there: run the move again")
        time.sleep(poll_seconds)
    offset = 0  # lane entries passed (a moved task's id stays in its lane, stale: core/lanes.py)
    while True:
        ids, offset, more = _queued_ids(client, src, user_id, page, offset)
        if ids:
            report.moved += _move(client, src, dst, user_id, ids)
        if not more:
            break
    src.clear_tenant_limits(user_id)
    src.resume_tenant(user_id)
    client.hdel(src.keys.tenant_moving, user_id)
    report.left = _left(client, src, user_id)
    return report


def _release_expired(client: redis.Redis, src: TaskQueue, user_id: str) -> bool:
    """Hand back the tenant's leased tasks in ``src`` whose lease has expired (their worker died; no
    worker may pop a former layout's keyspace, which is where an expired lease is taken back), so
    that they move too; whether one was handed back."""
    expired = [text(i) for i in client.zrangebyscore(src.keys.leases, "-inf", int(time.time() * 1000))]
    rows = client.pipeline(transaction=False)
    for task_id in expired:
        rows.hmget(src.keys.task(task_id), "u", "tok")
    mine = [Task(task_id=task_id, user_id=user_id, lease_token=text(token))
            for task_id, (owner, token) in zip(expired, rows.execute(), strict=True)
            if owner is not None and token is not None and text(owner) == user_id]
    return bool(mine) and src.release(mine, count=False) > 0


def _moving(client: redis.Redis, src: TaskQueue, user_id: str) -> bool:
    return bool(client.hexists(src.keys.tenant_moving, user_id))


def _queued_ids(client: redis.Redis, src: TaskQueue, user_id: str, page: int,
                offset: int) -> tuple[list[tuple[str, int]], int, bool]:
    """Up to ``page`` (task id, due ms or 0) of the tenant's queued and delayed tasks in ``src``: those of
    its lane entries from ``offset`` on (counted from the RPOP ends, a lane of the former layout last;
    the tenant is paused, so that they stay where they are; a deleted task's id stays in its lane),
    then of the delayed set; the offset of the next page, and whether there may be more."""
    keys = src.keys
    entries: list[str] = []
    pos = 0
    for i, lane in enumerate([*keys.lanes(user_id), keys.normal(user_id)]):
        size = int(client.llen(lane) if i < 6 else client.zcard(lane))
        low, high = max(offset, pos) - pos, min(offset + page, pos + size) - pos
        if low < high:
            if i < 6:
                entries += [text(e) for e in reversed(client.lrange(lane, -high, -(low + 1)))]
            else:  # (the pause above converted it; an old producer may have written it since)
                entries += [text(e) for e in client.zrange(lane, low, high - 1)]
        pos += size
    offset += len(entries)
    rows = client.pipeline(transaction=False)
    for task_id in entries:
        rows.hmget(keys.task(task_id), "u", "st")
    found = [(task_id, 0) for task_id, (owner, state) in zip(entries, rows.execute(), strict=True)
             if text(owner or b"") == user_id and text(state or b"") == "queued"]
    if entries:
        return found, offset, True
    if len(found) < page:
        for chunk in _chunks(client.zscan_iter(keys.delayed, count=1000), 1000):
            users = client.pipeline(transaction=False)
            for member, _ in chunk:
                users.hget(keys.task(text(member)), "u")
            for (member, score), owner in zip(chunk, users.execute(), strict=True):
                if owner is not None and text(owner) == user_id:
                    found.append((text(member), int(score)))
            if len(found) >= page:
                break
    return found[:page], offset, bool(found)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for entry in items:
        chunk.append(entry)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _move(client: redis.Redis, src: TaskQueue, dst: TaskQueue, user_id: str, ids: list[tuple[str, int]]) -> int:
    """Push each task to ``dst`` under its id (a duplicate when a former move pushed it), carry its
    failures and attempts, then delete it from ``src``."""
    rows = client.pipeline(transaction=False)
    for task_id, _ in ids:
        rows.hmget(src.keys.task(task_id), "b", "h", "r", "a")
    encoded: list[list[Any]] = []
    carried: list[tuple[str, Any, Any]] = []
    gone: list[str] = []
    partition = dst.proto.partition_of(user_id)
    weight = dst.config.weight_of(user_id)
    for (task_id, due_ms), (body, header, failures, attempts) in zip(ids, rows.execute(), strict=True):
        fields = text(header or b"").split("\t")
        if body is None or len(fields) < 5:  # gone meanwhile (or corrupt: the delete below sets it aside)
            gone.append(task_id)
            continue
        priority, max_retries = fields[0], fields[4]
        encoded.append([f"{task_id}\t{user_id}\t{priority}\t{partition}\t"
                        f"{int(weight) if weight == int(weight) else repr(weight)}\t{max_retries}\t{due_ms}", body])
        carried.append((task_id, failures, attempts))
    if encoded:
        drive(dst.transport, _push(dst, encoded))
        counts = client.pipeline(transaction=False)
        for task_id, failures, attempts in carried:
            extra: list[Any] = [x for k, v in (("r", failures), ("a", attempts)) if v is not None for x in (k, v)]
            if extra:
                counts.hset(dst.keys.task(task_id), items=extra)
        counts.execute()
    src.delete(*(task_id for task_id, _ in ids))
    return len(carried)


def _push(dst: TaskQueue, encoded: list[list[Any]]) -> Op[Any]:
    return (yield run(dst.scripts.push, dst.proto.push_args(encoded)))


def _left(client: redis.Redis, src: TaskQueue, user_id: str) -> dict[str, int]:
    """What of the tenant stays in ``src``: dead tasks, waiting ones, running ones (unfinished = live)."""
    live = client.zscore(src.keys.live, user_id)
    return {"unfinished": int(float(live or 0))}
