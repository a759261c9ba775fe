"""The one place that names Redis keys.

Every key lives under ``{<prefix>}:`` so that all keys one script touches share a hash tag
(one cluster slot). With ``queue.shards`` > 1 (see :mod:`.shards`) the keys of a tenant live under
its shard's tag ``{<prefix>:<n>}`` or ``{<prefix>:<n>.<salt>}`` instead (shard 0: ``{<prefix>}``; the
salt spreads the shards evenly over a cluster's slots, see :func:`shard_tags`), every shard holding
the whole layout below for its tenants, and only the home keys (workers, worker, beat, samples,
history, alerts, sched: the methods that use :attr:`Keys.home`) stay under ``{<prefix>}``.
The scripts are given the prefix P (``Keys.base``) and join to it the same
suffixes as the methods below (a test checks that every suffix a script uses is one of them):

  P:t:<id>                     HASH   task: b body, u user, h header "priority\tseq\tpartition\tweight\t
                                      max_retries", r failures, a attempts (absent = 0), st state, wk worker,
                                      tok lease token, e ready since (ms), lt leased at, wt wait of the attempt,
                                      ch cost charged (fairness "time"), err/et/tb/ft/dt on failure; uk its
                                      unique key, hd has dependents, dw dependencies still to succeed, dn their
                                      ids, df allows failure, na not before (ms), kp how long the outcome of a
                                      waiting task cancelled by a failed dependency is kept (ms), pg progress
                                      "token\tfraction\tms\tmessage" (progress.lua), cx cancel flag of a leased
                                      task (its value: the result ttl)
  P:queue:user:<u>:critical    LIST   CRITICAL lane (priority 6); LPUSH, RPOP: FIFO (a retry or release RPUSHes)
  P:queue:user:<u>:p<n>        LIST   the lane of priority n (1-5), the same way; pop serves critical, p5 .. p1
  P:queue:user:<u>:gone        HASH   the user's lazily removed lane entries: a cancelled or deleted queued
                                      task's id stays in its lane until a pop takes it; id -> how many stale
                                      entries of it the lanes hold, "\t<n>" -> how many lane n holds (a lane's
                                      exact count is its length less that)
  P:queue:user:<u>:normal      ZSET   the former lane of priorities 1-5 (score (6-p)*2^40 + seq), converted
                                      into the lists by the first script that touches the user's lanes
  P:ready:<part>               ZSET   users with ready work in a partition, score = virtual start time
  P:vclock                     HASH   partition -> virtual time when its rotation last emptied
  P:vfinish:<part>             HASH   idle user -> its last finish tag (keeps round-robin honest)
  P:gate                       STRING earliest ms at which a delayed task or a lease may be due
  P:seq                        STRING enqueue sequence
  P:wake:<part>                LIST   at most one wake-up token for idle workers (BLPOP)
  P:parked:<part>              ZSET   idle slots waiting on the partition, "token\tworker\tlease_ms\tfairness"
  P:hand:<token>               LIST   a task a push leased straight to a parked slot, or '-' (wake at once)
  P:delayed / P:leases / P:dlq ZSET   task id -> ready time / lease deadline / death time (ms)
  P:live                       ZSET   user -> tasks not yet finished (queued, delayed, leased)
  P:idle                       ZSET   user -> since when it is idle (ms; 0: its live count fell to 0, not stamped
                                      yet); fold_idle.lua stamps, then folds and forgets a tenant idle longer
                                      than queue.tenant_retention_seconds
  P:runavg                     HASH   user -> moving average run time in ms (fairness "time")
  P:queue:stats                HASH   counters (the total pushed is the sum of p:<n>:pushed)
  P:m:<user> / P:m:~all        HASH   wait and run histograms (ms);  P:m:~tput  completions per minute
  P:steal:<w>, P:stealdigest:<w> SET, STRING  a stealer's exact targets; "<digest>|<P:stealepoch>" of its copies
  P:sready:<n>:<part>:<w>      ZSET   steal copy: the users of P:ready:<part> stealer w may take, same scores
                                      (<n> = bytes in <part>: the name is unambiguous when ids contain ':')
  P:stealers:<part>            HASH   stealer -> its definition ("1"/"0" has exact targets, then tab-separated
                                      anchored Lua patterns): whose copies a change of P:ready:<part> updates
  P:stealparts:<w>             SET    the partitions stealer w has copies of
  P:stealseen                  ZSET   stealer -> when it last synced (ms): long-silent stealers are forgotten
  P:stealepoch                 STRING changed when a steal key was moved aside: every stealer rebuilds
  P:sched:<name>               HASH   a periodic schedule: last (tick claimed or skipped, epoch s), fired, skipped,
                                      paused, at (ms of the last claim), c:<tick> "<token>|<ms>" a claim whose push
                                      is not confirmed yet, now (ms of the last run now), runs
  P:uniq:<n>:<user>:<key>      STRING unique key -> the id of the unfinished task holding it (<n> = length of user)
  P:deps:<id>                  SET    the tasks waiting for task <id> to succeed
  P:tleased                    HASH   user -> tasks leased now (fleet-wide; kept by every script that starts or
                                      ends a lease; recounted from P:leases when it holds garbage; a 0 stays
                                      until the retention sweep folds the tenant)
  P:tlimits                    HASH   user -> runtime limits "cap\tinterval_ms\tburst" ('' unset, '-' none)
  P:limitcfg                   HASH   the tenant_concurrency / tenant_limits settings as the scripts read them
                                      (d digest, def default cap, x:<id> exact specs, p patterns)
  P:tpaused                    HASH   paused user -> since when (ms)
  P:tmoving                    HASH   user -> '1' while core/reshard.py moves it to another shard (its pause)
  P:theld                      HASH   user kept out of its rotation with work queued -> why: paused, cap, rate
  P:tlimon                     STRING '1' while a tenant is paused, held or limited (runtime or settings), '0' when
                                      none is: push/pop/ack then skip every limit lookup (includes/limits_on)
  P:trate                      HASH   user -> theoretical arrival time (ms) of its rate limit (GCRA)
  P:tnext                      ZSET   rate-limited user -> when its next token is due (a timer, like P:delayed)
  P:quarantine:<key>:<n>       any    a key that held the wrong type of value, moved aside
  P:quarantined                STRING counter numbering the keys moved aside
"""

from __future__ import annotations

import binascii
import functools
import re
from dataclasses import dataclass

from .errors import TaskValidationError
from .ids import user_id_problem

# Characters that would break key names or hash tags, plus whitespace and control characters.
_BAD_ID_CHARS = re.compile(r"[{}\s\x00-\x1f\x7f-\x9f]")


def validate_user_id(user_id: object, max_length: int = 200) -> str:
    """Return ``user_id`` if it is a usable user id (rules: :mod:`.ids`), else raise
    :class:`TaskValidationError`."""
    problem = user_id_problem(user_id, max_length)
    if problem is not None:
        raise TaskValidationError(problem)
    assert isinstance(user_id, str)
    return user_id


def validate_key_part(value: object, what: str, max_length: int = 200) -> str:
    """Validate a free-form key component (XCom key, worker id)."""
    if not isinstance(value, str) or not value:
        raise TaskValidationError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > max_length or _BAD_ID_CHARS.search(value):
        raise TaskValidationError(f"{what} {value[:50]!r} is too long or contains braces/whitespace")
    return value


CLUSTER_SLOTS = 16384

# The priorities of a user's lanes in the order pop serves them (6: the critical lane).
LANE_PRIORITIES = (6, 5, 4, 3, 2, 1)


def tag_slot(tag: str) -> int:
    """The Redis Cluster slot of hash tag ``tag``: CRC16 (XMODEM) of its UTF-8 bytes, modulo 16384."""
    return binascii.crc_hqx(tag.encode("utf-8", "surrogatepass"), 0) % CLUSTER_SLOTS


@functools.lru_cache(maxsize=64)
def shard_tags(prefix: str, shards: int) -> tuple[str, ...]:
    """The hash tag of each of ``shards`` shards: shard 0's is ``prefix``; shard i's is ``prefix:i``, or
    ``prefix:i.k`` with the smallest salt k >= 1 that puts it, when ``prefix:i`` does not, into the
    i-th of ``shards`` equal slot ranges counted on from shard 0's (the middle half of the range while a
    range is 64 slots or more). A cluster whose masters own equal runs of slots (as ``redis-cli
    --cluster create`` splits them) so holds an even share of the shards: the same number on every
    master when the masters divide the shards."""
    if shards <= 1:
        return (prefix,)
    first = tag_slot(prefix) * shards // CLUSTER_SLOTS
    tags = [prefix]
    for shard in range(1, shards):
        lane = (first + shard) % shards
        low, high = lane * CLUSTER_SLOTS / shards, (lane + 1) * CLUSTER_SLOTS / shards
        margin = (high - low) / 4 if high - low >= 64 else 0.0
        salt = 0
        while True:
            tag = f"{prefix}:{shard}" if salt == 0 else f"{prefix}:{shard}.{salt}"
            if low + margin <= tag_slot(tag) < high - margin:
                break
            salt += 1
        tags.append(tag)
    return tuple(tags)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names for one prefix (``queue.stats_prefix``) and one keyspace shard (``None``: the only one,
    or the home keyspace of a sharded prefix; see :mod:`.shards`)."""

    prefix: str = "fq"
    shard: int | None = None
    tag: str | None = None  # the shard's hash tag (:func:`shard_tags`); None: ``prefix:shard``

    @classmethod
    def of_shard(cls, prefix: str, shard: int | None, shards: int) -> Keys:
        """The keys of ``shard`` of a prefix spread over ``shards`` shards (its tag: :func:`shard_tags`)."""
        return cls(prefix, shard, shard_tags(prefix, shards)[shard] if shard else None)

    @property
    def base(self) -> str:
        """The hash-tagged prefix passed to every script, e.g. ``{fq}`` (shard 0 is ``{fq}``, so that a
        single-shard layout is shard 0 of any sharded one; shard 3 of 12: ``{fq:3}`` or a salted
        ``{fq:3.k}``, see :func:`shard_tags`)."""
        if not self.shard:
            return "{" + self.prefix + "}"
        return "{" + (self.tag if self.tag is not None else f"{self.prefix}:{self.shard}") + "}"

    @property
    def home(self) -> str:
        """The hash-tagged prefix of the keys every shard shares (workers, heartbeats, schedules,
        samples, alerts): ``{fq}``, the same as :attr:`base` when the prefix is not sharded."""
        return "{" + self.prefix + "}"

    @property
    def stats(self) -> str:
        return f"{self.base}:queue:stats"

    @property
    def seq(self) -> str:
        return f"{self.base}:seq"

    @property
    def delayed(self) -> str:
        return f"{self.base}:delayed"

    @property
    def leases(self) -> str:
        return f"{self.base}:leases"

    @property
    def dlq(self) -> str:
        return f"{self.base}:dlq"

    @property
    def live(self) -> str:
        return f"{self.base}:live"

    @property
    def idle(self) -> str:
        """User -> since when it is idle (ms; 0: not stamped yet): the tenants the retention sweep may fold."""
        return f"{self.base}:idle"

    @property
    def vclock(self) -> str:
        return f"{self.base}:vclock"

    @property
    def gate(self) -> str:
        """Earliest ms at which a timer (delayed task, lease deadline) may be due."""
        return f"{self.base}:gate"

    @property
    def runavg(self) -> str:
        """User -> moving average run time in ms (fairness "time")."""
        return f"{self.base}:runavg"

    @property
    def tenant_leased(self) -> str:
        """User -> tasks leased now (fleet-wide)."""
        return f"{self.base}:tleased"

    @property
    def tenant_limits(self) -> str:
        """User -> runtime limits spec (see core/config/limits.py)."""
        return f"{self.base}:tlimits"

    @property
    def limit_config(self) -> str:
        """The limit settings mirrored for the scripts."""
        return f"{self.base}:limitcfg"

    @property
    def tenant_paused(self) -> str:
        """Paused user -> since when (ms)."""
        return f"{self.base}:tpaused"

    @property
    def tenant_moving(self) -> str:
        """User -> '1' while a move to another shard pauses it (core/reshard.py)."""
        return f"{self.base}:tmoving"

    @property
    def tenant_held(self) -> str:
        """User held out of its rotation with work queued -> why (paused, cap, rate)."""
        return f"{self.base}:theld"

    @property
    def limits_on(self) -> str:
        """'1' while any tenant limit may apply, '0' when none does (the hot scripts skip the lookups)."""
        return f"{self.base}:tlimon"

    @property
    def tenant_rate(self) -> str:
        """User -> theoretical arrival time (ms) of its rate limit."""
        return f"{self.base}:trate"

    @property
    def tenant_next(self) -> str:
        """Rate-limited user -> when its next token is due (ms)."""
        return f"{self.base}:tnext"

    @property
    def quarantined(self) -> str:
        """Counter numbering the keys moved aside (``quarantine(key, n)``)."""
        return f"{self.base}:quarantined"

    def quarantine(self, key: str, n: int) -> str:
        """Where a key that held the wrong type of value was moved."""
        return f"{self.base}:quarantine:{key}:{n}"

    @property
    def workers(self) -> str:
        return f"{self.home}:workers"

    @property
    def workers_stopped(self) -> str:
        """Hash worker id -> time of its last clean stop."""
        return f"{self.home}:workers:stopped"

    def task(self, task_id: str) -> str:
        return f"{self.base}:t:{task_id}"

    def critical(self, user_id: str) -> str:
        """The CRITICAL lane (priority 6) of a user: the one served first."""
        return f"{self.base}:queue:user:{user_id}:critical"

    def lane(self, user_id: str, priority: int) -> str:
        """The lane (LIST) of a user's ready tasks of ``priority`` (1-6; 6 is :meth:`critical`)."""
        if priority == 6:
            return self.critical(user_id)
        return f"{self.base}:queue:user:{user_id}:p{priority}"

    def lanes(self, user_id: str) -> tuple[str, ...]:
        """A user's lanes in the order pop serves them: critical, then priorities 5 .. 1."""
        return tuple(self.lane(user_id, p) for p in LANE_PRIORITIES)

    def gone(self, user_id: str) -> str:
        """Hash: the user's lazily removed lane entries (id -> stale entries, ``"\t<n>"`` -> those of lane n)."""
        return f"{self.base}:queue:user:{user_id}:gone"

    def normal(self, user_id: str) -> str:
        """The former ZSET lane of priorities 1-5 (before the lanes were lists; converted on first touch)."""
        return f"{self.base}:queue:user:{user_id}:normal"

    def ready(self, partition: str) -> str:
        return f"{self.base}:ready:{partition}"

    def vfinish(self, partition: str) -> str:
        return f"{self.base}:vfinish:{partition}"

    def wake(self, partition: str) -> str:
        return f"{self.base}:wake:{partition}"

    def home_wake(self, partition: str) -> str:
        """The wake list of a partition in the home keyspace: the idle workers of a sharded prefix wait
        on it, and a push that made a user join a shard's rotation leaves a token there."""
        return f"{self.home}:wake:{partition}"

    def parked(self, partition: str) -> str:
        return f"{self.base}:parked:{partition}"

    def hand(self, token: str) -> str:
        return f"{self.base}:hand:{token}"

    def steal_set(self, worker_id: str) -> str:
        return f"{self.base}:steal:{worker_id}"

    def steal_digest(self, worker_id: str) -> str:
        return f"{self.base}:stealdigest:{worker_id}"

    def steal_ready(self, partition: str, worker_id: str) -> str:
        """A stealer's copy of a partition's ready set (the users it may take)."""
        return f"{self.base}:sready:{len(partition.encode('utf-8'))}:{partition}:{worker_id}"

    def stealers(self, partition: str) -> str:
        """Stealer -> definition, of the stealers that keep a copy of the partition's ready set."""
        return f"{self.base}:stealers:{partition}"

    def steal_parts(self, worker_id: str) -> str:
        return f"{self.base}:stealparts:{worker_id}"

    @property
    def steal_seen(self) -> str:
        """Stealer -> when it last synced its copies (ms)."""
        return f"{self.base}:stealseen"

    @property
    def steal_epoch(self) -> str:
        return f"{self.base}:stealepoch"

    def worker(self, worker_id: str) -> str:
        return f"{self.home}:worker:{worker_id}"

    def beat(self, worker_id: str) -> str:
        """The worker's last heartbeat time, expiring ``orphan_after`` seconds after it (Redis's
        clock): its absence makes the worker's partition orphaned (orphan takeover)."""
        return f"{self.home}:beat:{worker_id}"

    # user ids and XCom keys / task ids may both contain ':', so the user id is length-prefixed:
    # ("acme:eu", "report") and ("acme", "eu:report") must never name the same key.
    def metrics_user(self, user_id: str) -> str:
        """Wait/run histograms of one user (see lua/lib.lua ``observe``)."""
        return f"{self.base}:m:{user_id}"

    @property
    def metrics_all(self) -> str:
        """Wait/run histograms of all users together."""
        return f"{self.base}:m:~all"

    @property
    def metrics_throughput(self) -> str:
        """Completions per minute (field: epoch minute)."""
        return f"{self.base}:m:~tput"

    @property
    def samples(self) -> str:
        """Counter snapshots (one per ``sample_interval``), the base of rates and counter windows."""
        return f"{self.home}:admin:samples"

    @property
    def history(self) -> str:
        """Dashboard chart points (one per minute)."""
        return f"{self.home}:m:history"

    @property
    def alerts(self) -> str:
        """Alert rule states (hash ``s:<rule>``, ``t:``, ``e:``, ``d:`` fields)."""
        return f"{self.home}:alerts"

    def guard(self, key: str) -> str:
        """The ``SET NX`` guard of ``key`` (samples, history, alerts): at most one writer per interval
        across processes."""
        return f"{key}:guard"

    def xcom(self, user_id: str, key: str) -> str:
        return f"{self.base}:xcom:{len(user_id)}:{user_id}:{key}"

    def result(self, user_id: str, task_id: str) -> str:
        return f"{self.base}:result:{len(user_id)}:{user_id}:{task_id}"

    def idempotency(self, task_id: str) -> str:
        """String: the task id was pushed idempotently (the outbox relay); expires after
        ``queue.idempotency_ttl_seconds``."""
        return f"{self.base}:idem:{task_id}"

    def schedule(self, name: str) -> str:
        """Hash: the state of a periodic schedule (last tick claimed, its pending claims, pause)."""
        return f"{self.home}:sched:{name}"
    def unique(self, user_id: str, key: str) -> str:
        """String: the id of the unfinished task of ``user_id`` holding unique key ``key`` (tenant-scoped:
        the user's length first, as for XCom keys)."""
        return f"{self.base}:uniq:{len(user_id)}:{user_id}:{key}"

    def dependents(self, task_id: str) -> str:
        """Set: the tasks waiting for task ``task_id`` to succeed (``depends_on``)."""
        return f"{self.base}:deps:{task_id}"

    def result_owner(self, task_id: str) -> str:
        """Which user a stored result belongs to (lets trusted code find it by id alone)."""
        return f"{self.base}:result_owner:{task_id}"
