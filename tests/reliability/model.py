"""A pure-Python reference model of the queue's intended semantics, step for step as the Lua
scripts do it (``fairque_django/core/lua/*.lua``):

- per user, a lane per priority, served CRITICAL (6) first, then 5..1, each FIFO (tasks whose lease
  expired or that were released go to its front, promoted delayed tasks to its back); a cancelled
  or deleted queued task leaves its id in its lane (lazy removal), counted as a stale entry of the
  user until a pop (or cancel_queued, or a look for the user's partition) takes it out, or the
  user's lanes hold nothing else when a task of theirs is cancelled (then they go);
- per partition, a rotation of ready users by virtual time: a user joining takes
  ``start = max(score of the head of the ready set, or the partition clock; its last finish)``,
  each service moves it to ``finish = start + 1/weight``; ties go to the smaller user id;
- a worker serves its own partition first, then steals the lowest (score, user) among the users
  it may steal in its steal partitions (earlier partition on ties);
- leases, retries (immediately for an expired lease, after a backoff otherwise), the DLQ,
  requeue, release, and the stats counters;
- cancel: a queued or delayed task is removed (a user whose lanes empty leaves the rotation, its
  virtual time kept as its finish tag, the partition clock set when the rotation empties); a
  leased one is flagged, and its ack, failure, release or lease expiry then finishes it as
  cancelled;
- parked slots (an idle worker waiting): a push of a task that is ready now, for a user with no
  queued task while its partition's rotation is empty, leases it to the earliest parked slot of
  the partition, exactly as joining the rotation and one pop would.

- unique keys (drop / replace; debounce, being about timers and key expiry, is tested in
  tests/integration/test_workflows.py): a push whose key names an unfinished task is answered with
  that task; the key is released when its task ends (completed, dead, cancelled);
- dependencies: a task waits (in no lane, not live) until every dependency completed, becomes
  ready (joining the rotation) on the last; a dependency's death cancels it, and its dependents in
  turn (unless it allows failure); dependents are handled in id order.
- the retention sweep (issue 17, window 0): an idle tenant's stats counters go, and each finish
  tag the rotation has passed (with the rotation empty: after the partition clock moved up to it);
- tenant limits (issue 15): a tenant that is paused, at its concurrency cap, or out of rate tokens
  is *held*: it is not in its rotation (it leaves it keeping its virtual start as its finish tag,
  or, served, like a user that went idle) and rejoins through the usual join (``max(V, F)``) when
  the lease count drops, it is resumed or its limits change. Rates here are ``1/h``: a tenant
  has ``burst`` tokens, then waits an hour (never within a test), so no timer fires; a change of
  its rate refills its bucket.

Time is the Redis server's clock in ms; the state machine tells the model which timers fired.

Poison (:meth:`Model.poison_clock`, :meth:`Model.poison_finish`, :meth:`Model.poison_stat`): a
garbage value written into a partition clock, a finish tag or a stats counter is repaired the
first time a script reads it -- the clock to 0, the finish tag to the joining start, the counter
restarted from the increment -- and each repair is counted in the stats field ``repaired``.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from fairque_django.core.config import FairQueueConfig
from fairque_django.core.config.limits import LimitSpec, effective_limits

GARBAGE = "garbage"  # a value of the right type (a string, a hash field) that is no number
LANES = (6, 5, 4, 3, 2, 1)  # the priorities of a user's lanes in serving order


@dataclass
class MTask:
    id: str
    user: str
    prio: int
    seq: int
    weight: float
    part: str
    maxr: int
    r: int = 0
    a: int = 0
    st: str = "queued"
    token: str | None = None
    deadline: int | None = None  # lease deadline (server ms)
    due: int | None = None  # delayed until (server ms)
    cx: bool = False  # cancelled while leased (the cancel flag)
    uk: str | None = None  # its unique key
    left: int = 0  # dependencies still to succeed (waiting)
    allow: bool = False  # runs when a dependency fails
    deps: list[str] = field(default_factory=list)  # the dependencies it waited for at its push


@dataclass
class Model:
    config: FairQueueConfig
    tasks: dict[str, MTask] = field(default_factory=dict)
    # user -> priority -> its lane, the next served first (stale entries included)
    lanes: defaultdict[str, defaultdict[int, deque[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(deque)))
    gone: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # id -> stale
    gone_lane: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))  # prio -> stale
    # (user, priority) -> (seq, id) of the tasks the current script call put back at the head of that lane
    front_run: dict[tuple[str, int], list[tuple[int, str]]] = field(default_factory=dict)
    ready: defaultdict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    vfinish: defaultdict[str, dict[str, float | str]] = field(default_factory=lambda: defaultdict(dict))
    vclock: dict[str, float | str] = field(default_factory=dict)
    seq: int = 0
    poisoned_stats: set[str] = field(default_factory=set)
    stats: Counter[str] = field(default_factory=Counter)
    # partition -> (park deadline ms, member "token\tworker\t...") of the slots waiting there
    parked: defaultdict[str, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))
    cancelled: dict[str, str] = field(default_factory=dict)  # task id -> user of the tasks cancelled
    uniq: dict[str, str] = field(default_factory=dict)  # unique key -> task id
    dependents: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # tenant limits: runtime specs, paused users, leased counts, held users (-> why), rate tokens used
    runtime: dict[str, LimitSpec] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    leased: Counter[str] = field(default_factory=Counter)
    held: dict[str, str] = field(default_factory=dict)
    tokens_used: Counter[str] = field(default_factory=Counter)

    # --- tenant limits ------------------------------------------------------------------
    def limits(self, user: str) -> dict[str, object]:
        q = self.config.queue
        return effective_limits(q.tenant_concurrency, q.tenant_limits, user, self.runtime.get(user))

    def blocked(self, user: str) -> str | None:
        """tenant_block.lua: why user may not be leased a task now."""
        if user in self.paused:
            return "paused"
        lim = self.limits(user)
        cap = lim["concurrency"]
        if cap is not None and self.leased[user] >= int(cap):  # type: ignore[call-overload]
            return "cap"
        if lim["rate"] is not None and self.tokens_used[user] >= int(lim["burst"]):  # type: ignore[call-overload]
            return "rate"
        return None

    def lease_taken(self, user: str) -> None:
        lim = self.limits(user)
        cap = lim["concurrency"]
        assert cap is None or self.leased[user] < int(cap), f"{user} leased beyond its cap {cap}"  # type: ignore[call-overload]
        self.leased[user] += 1
        if lim["rate"] is not None:
            self.tokens_used[user] += 1

    # --- lanes (includes/lane_keys, gone_add, lane_drop, lane_stale, lane_purge, lanes_tidy) ---------
    def has_entries(self, user: str) -> bool:
        return any(self.lanes[user][p] for p in LANES)

    def queued_count(self, user: str) -> int:
        return sum(len(self.lanes[user][p]) for p in LANES) - sum(self.gone_lane[user].values())

    def is_queued(self, tid: str, user: str) -> bool:
        t = self.tasks.get(tid)
        return t is not None and t.user == user and t.st == "queued"

    def lane_drop(self, user: str, prio: int, tid: str) -> None:
        self.gone[user][tid] += 1
        self.gone_lane[user][prio] += 1

    def lane_stale(self, user: str, prio: int, tid: str) -> bool:
        if self.gone[user][tid] < 1:
            self.gone[user].pop(tid, None)
            return False
        self.gone[user][tid] -= 1
        self.gone_lane[user][prio] -= 1
        self.gone[user] = +self.gone[user]
        self.gone_lane[user] = +self.gone_lane[user]
        return True

    def lane_purge(self, user: str, tid: str) -> None:
        if tid not in self.gone[user]:
            return
        for p in LANES:
            lane = self.lanes[user][p]
            n = lane.count(tid)
            if n:
                self.lanes[user][p] = deque(i for i in lane if i != tid)
                self.gone_lane[user][p] -= n
        del self.gone[user][tid]
        self.gone_lane[user] = +self.gone_lane[user]

    def lanes_tidy(self, user: str) -> bool:
        if self.queued_count(user) > 0:
            return False
        for p in LANES:
            self.lanes[user][p].clear()
        self.gone[user].clear()
        self.gone_lane[user].clear()
        return True

    def queued_part(self, user: str) -> str | None:
        for p in LANES:
            lane = self.lanes[user][p]
            while lane:
                head = lane[0]
                if self.is_queued(head, user) or not self.lane_stale(user, p, head):
                    t = self.tasks.get(head)
                    return t.part if t is not None else "~pool"
                lane.popleft()
        return None

    def rejoin(self, user: str) -> None:
        """rejoin.lua: look at a user's place again after its limits, pause or leases changed."""
        part = self.queued_part(user)
        if part is None:
            self.held.pop(user, None)
            return
        ready = self.ready[part]
        if user not in ready:
            self.mark_ready(part, user)
            return
        why = self.blocked(user)
        if why:
            self.vfinish[part][user] = ready.pop(user)
            self.held[user] = why

    def lease_ended(self, user: str) -> None:
        self.leased[user] -= 1
        if self.leased[user] <= 0:
            del self.leased[user]
        if user in self.held:
            self.rejoin(user)

    def tenant_op(self, user: str, op: str, spec: LimitSpec | None = None) -> None:
        """tenant.lua: set / clear runtime limits, pause / resume, then rejoin."""
        before = self.limits(user)["rate"]
        if op == "set":
            assert spec is not None
            old = self.runtime.get(user, LimitSpec())
            self.runtime[user] = LimitSpec(
                spec.concurrency if spec.concurrency is not None else old.concurrency,
                spec.rate if spec.rate is not None else old.rate,
                spec.burst if spec.burst is not None else old.burst)
        elif op == "clear":
            self.runtime.pop(user, None)
        elif op == "pause":
            self.paused.add(user)
        else:
            self.paused.discard(user)
        if self.limits(user)["rate"] != before:
            self.tokens_used.pop(user, None)
        self.rejoin(user)

    # --- helpers ------------------------------------------------------------------------
    def stat(self, name: str, n: int = 1) -> None:
        if name in self.poisoned_stats:  # the counter held garbage: it restarts from n
            self.poisoned_stats.discard(name)
            self.stats[name] = 0
            self.stats["repaired"] += 1
        self.stats[name] += n

    # --- poison: a garbage value of the right type, repaired when a script reads it -------
    def poison_clock(self, part: str) -> None:
        self.vclock[part] = GARBAGE

    def poison_finish(self, part: str, user: str) -> None:
        self.vfinish[part][user] = GARBAGE

    def poison_stat(self, name: str) -> None:
        self.stats[name] = 0  # read as 0 until repaired
        self.poisoned_stats.add(name)

    def joining_start(self, part: str, user: str, head: float | None) -> float:
        """joining_start.lua: the head's score, else the partition clock; the user's finish tag
        when later. Garbage in either is repaired (clock: 0; finish tag: the start)."""
        if head is None:
            clock = self.vclock.get(part, 0.0)
            if clock == GARBAGE:
                clock = self.vclock[part] = 0.0
                self.stats["repaired"] += 1
            head = float(clock)
        start = head
        finish = self.vfinish[part].get(user)
        if finish == GARBAGE:
            finish = self.vfinish[part][user] = start
            self.stats["repaired"] += 1
        if finish is not None and float(finish) > start:
            start = float(finish)
        return start

    def mark_ready(self, part: str, user: str) -> None:
        ready = self.ready[part]
        if user in ready:
            return
        why = self.blocked(user)
        if why:  # join_rotation: held back by its limits
            self.held[user] = why
            return
        self.held.pop(user, None)
        start = self.joining_start(part, user, min(ready.values()) if ready else None)
        self.vfinish[part].pop(user, None)
        ready[user] = start

    def begin_call(self) -> None:
        """A script call starts: the tasks it puts back at the head of a lane keep their order."""
        self.front_run = {}

    def enqueue_ready(self, t: MTask, front: bool) -> None:
        if front:  # at the head, among the tasks this call put back there by their enqueue order
            run = self.front_run.setdefault((t.user, t.prio), [])
            lane = self.lanes[t.user][t.prio]
            for _ in run:
                lane.popleft()
            run.append((t.seq, t.id))
            run.sort()
            lane.extendleft(tid for _, tid in reversed(run))
        else:
            self.lanes[t.user][t.prio].append(t.id)
        t.st = "queued"
        t.due = None
        self.mark_ready(t.part, t.user)

    def bury(self, t: MTask) -> None:
        t.st = "dead"
        t.token = None
        t.deadline = None
        self.stat("dead")
        self.stat(f"u:{t.user}:dead")
        self.finished(t, ok=False)

    def release_unique(self, t: MTask) -> None:
        if t.uk is not None and self.uniq.get(t.uk) == t.id:
            del self.uniq[t.uk]

    def finished(self, t: MTask, ok: bool) -> None:
        """A task ended: its key is released; its dependents count it as met (ok) or are cancelled,
        theirs in turn (a work list, as deps_failed.lua)."""
        self.release_unique(t)
        if ok:
            for d in sorted(self.dependents.pop(t.id, set())):
                self.count_down(d)
            return
        todo = [t.id]
        while todo:
            x = todo.pop(0)
            for d in sorted(self.dependents.pop(x, set())):
                dt = self.tasks.get(d)
                if dt is None or dt.st != "waiting":
                    continue
                if dt.allow:
                    self.count_down(d)
                else:
                    self.cancel_done(d)
                    todo.append(d)

    def count_down(self, tid: str) -> None:
        t = self.tasks.get(tid)
        if t is None or t.st != "waiting":
            return
        t.left -= 1
        if t.left <= 0:
            t.left = 0
            self.enqueue_ready(t, front=False)

    def fail_attempt(self, t: MTask, *, force_dead: bool, due: int | None) -> str:
        """``due`` None: retry now (front of the lane); else the delayed-until time Redis chose."""
        t.r += 1
        t.token = None
        t.deadline = None
        t.st = "failing"
        self.lease_ended(t.user)
        self.stat("failed")
        self.stat(f"u:{t.user}:failed")
        if force_dead or t.r > t.maxr:
            self.bury(t)
            return "dead"
        self.stat("retried")
        if due is None:
            self.enqueue_ready(t, front=True)
        else:
            t.st = "delayed"
            t.due = due
        return "retry"

    # --- operations ----------------------------------------------------------------------
    def hand_off(self, t: MTask) -> str | None:
        """Lease a task ready now to a parked slot if a pop would choose it; returns the slot's token."""
        part, user = t.part, t.user
        if self.ready[part] or self.has_entries(user) or self.blocked(user) or not self.parked[part]:
            return None
        slot = min(self.parked[part])
        self.parked[part].remove(slot)
        start = self.joining_start(part, user, None)
        self.vfinish[part][user] = start + 1 / (t.weight if t.weight > 0 else 1)
        self.vclock[part] = start
        t.a += 1
        t.st = "leased"
        self.lease_taken(user)
        t.token = slot[1].split("\t")[0]
        self.stat("popped")
        return t.token

    def push(self, entries: list[tuple[str, str, int, int, int | None]]) -> list[int]:
        """entries: (id, user, priority, max_retries, due or None); returns push.lua's reply.
        Tasks leased to parked slots are listed in ``self.handed`` as (task id, token)."""
        first = self.seq
        self.seq += len(entries)
        self.handed: list[tuple[str, str]] = []
        out = []
        for i, (tid, user, prio, maxr, due) in enumerate(entries):
            if tid in self.tasks:
                out.append(0)
                continue
            out.append(1)
            self.lane_purge(user, tid)
            t = MTask(tid, user, prio, first + i + 1, self.config.weight_of(user), self.config.partition_of(user),
                      maxr)
            self.tasks[tid] = t
            if due is not None:
                t.st = "delayed"
                t.due = due
            elif (token := self.hand_off(t)) is not None:
                self.handed.append((tid, token))
            else:
                self.enqueue_ready(t, front=False)
            self.stat("pushed")
            self.stat(f"u:{user}:pushed")
        return out

    def push_with(self, entry: tuple[str, str, int, int], uk: str | None, mode: str,
                  deps: list[tuple[str, str]], allow: bool) -> tuple[str, str | None]:
        """One task pushed with a unique key and / or dependencies (push_gate.lua): push.lua's answer
        ('1', 'D', 'R', 'W', 'C', 'X') and the other task's id for 'D' / 'R'."""
        tid, user, prio, maxr = entry
        self.seq += 1
        self.handed = []
        if tid in self.tasks:
            return "0", None
        if uk is not None:
            old = self.tasks.get(self.uniq.get(uk, ""))
            if old is not None and old.st in ("queued", "delayed", "waiting", "leased"):
                if mode == "drop":
                    return "D", old.id
                if old.st != "leased":
                    return "R", old.id
        unmet, failed = [], None
        for du, did in deps:
            dep = self.tasks.get(did)
            if dep is None and self.cancelled.get(did) == du:  # gone, its record reads CANCELLED
                failed = failed or (None if allow else did)
                continue
            if dep is None or dep.user != du:  # (completed: no result kept in this test) or another user's
                return "X", None
            if dep.st == "dead":
                failed = failed or (None if allow else did)
            else:
                unmet.append(did)
        self.lane_purge(user, tid)
        t = MTask(tid, user, prio, self.seq, self.config.weight_of(user), self.config.partition_of(user), maxr,
                  allow=allow)
        self.tasks[tid] = t
        self.stat("pushed")
        self.stat(f"u:{user}:pushed")
        if failed is not None:  # stored waiting, cancelled at once (push_waiting.lua)
            t.st = "waiting"
            self.cancel_done(tid)
            return "C", None
        if uk is not None:
            t.uk = uk
            self.uniq[uk] = tid
        if unmet:
            t.st = "waiting"
            t.left = len(unmet)
            t.deps = unmet
            for did in unmet:
                self.dependents[did].add(tid)
            return "W", None
        if (token := self.hand_off(t)) is not None:
            self.handed.append((tid, token))
        else:
            self.enqueue_ready(t, front=False)
        return "1", None

    def run_timers(self, expired: list[str], promoted: list[str]) -> None:
        self.begin_call()
        for tid in sorted(expired, key=lambda i: (self.tasks[i].deadline or 0, i)):
            if self.tasks[tid].cx:
                self.cancel_leased(tid)
                continue
            self.stat("expired")
            self.fail_attempt(self.tasks[tid], force_dead=False, due=None)
        for tid in sorted(promoted, key=lambda i: (self.tasks[i].due or 0, i)):
            self.enqueue_ready(self.tasks[tid], front=False)

    def take(self, user: str) -> tuple[str, int] | None:
        for p in LANES:
            if self.lanes[user][p]:
                return self.lanes[user][p].popleft(), p
        return None

    def serve(self, part: str, user: str, score: float) -> MTask | None:
        why = self.blocked(user)
        if why:  # held back by its limits: it leaves the rotation keeping its place
            del self.ready[part][user]
            self.vfinish[part][user] = score
            self.held[user] = why
            return None
        while True:
            taken = self.take(user)
            if taken is None:  # only stale entries were left: it leaves as after its last pop
                del self.ready[part][user]
                self.vfinish[part][user] = score
                if not self.ready[part]:
                    self.vclock[part] = score
                return None
            tid, prio = taken
            if self.is_queued(tid, user):
                break
            assert self.lane_stale(user, prio, tid), f"stray id {tid} in a lane of {user}"
        t = self.tasks[tid]
        finish = score + 1 / (t.weight if t.weight > 0 else 1)
        self.lease_taken(user)
        more = self.has_entries(user)
        why = self.blocked(user) if more else None
        if more and not why:
            self.ready[part][user] = finish
        else:
            del self.ready[part][user]
            self.vfinish[part][user] = finish
            self.vclock[part] = score
            if why:
                self.held[user] = why
        t.a += 1
        t.st = "leased"
        self.stat("popped")
        return t

    def pop(self, worker_id: str) -> MTask | None:
        own = self.ready[worker_id]
        for _ in range(100):
            if not own:
                break
            user = min(own, key=lambda u: (own[u], u))
            served = self.serve(worker_id, user, own[user])
            if served is not None:
                return served
        worker = self.config.get_worker(worker_id)
        parts = self.config.steal_partitions(worker_id) if worker.steal_targets else ()
        for _ in range(100):
            best: tuple[str, str, float] | None = None
            for part in parts:
                for user, score in sorted(self.ready[part].items(), key=lambda kv: (kv[1], kv[0])):
                    if best is not None and score >= best[2]:
                        break
                    if worker.may_steal(user):
                        best = (part, user, score)
                        break
            if best is None:
                break
            served = self.serve(*best)
            if served is not None:
                return served
        return None

    def lease_ok(self, tid: str, token: str | None) -> int:
        """What ``leased_fields`` answers: 1 ok, 0 lease lost (counted), -1 no such task."""
        t = self.tasks.get(tid)
        if t is None:
            return -1
        if t.st != "leased" or t.token != token:
            self.stat("late_acks")
            return 0
        return 1

    def complete(self, tid: str, token: str | None) -> int:
        code = self.lease_ok(tid, token)
        if code == 1 and self.tasks[tid].cx:
            self.cancel_leased(tid)
            return 2
        if code == 1:
            t = self.tasks.pop(tid)
            self.lease_ended(t.user)
            self.stat("completed")
            self.stat(f"u:{t.user}:completed")
            self.finished(t, ok=True)
        return code

    def release(self, tid: str, token: str | None) -> int:
        self.begin_call()
        t = self.tasks.get(tid)
        if t is None or t.st != "leased" or t.token != token:
            return 0
        if t.cx:  # finished as cancelled, not handed back
            self.cancel_leased(tid)
            return 0
        t.token = None
        t.deadline = None
        t.a = max(0, t.a - 1)
        t.st = "released"
        self.lease_ended(t.user)
        self.enqueue_ready(t, front=True)
        self.stat("released")
        return 1

    # --- cancel ---------------------------------------------------------------------------
    def cancel_done(self, tid: str) -> bool:
        """cancel_done.lua, the one way every cancel ends: the task is gone (its record reads
        CANCELLED), a lease it held ends (its tenant's cap frees), its unique key is released, it
        counts once in 'cancelled'. Returns whether it has dependents (the caller cancels them)."""
        t = self.tasks.pop(tid)
        self.cancelled[tid] = t.user
        if t.st == "waiting":  # its dependencies list it no more
            for dep in t.deps:
                self.dependents[dep].discard(tid)
        if t.st == "leased":
            self.lease_ended(t.user)
        self.stat("cancelled")
        self.stat(f"u:{t.user}:cancelled")
        self.release_unique(t)
        return bool(self.dependents.get(tid))

    def cancel_cascade(self, tid: str) -> None:
        """cancel_done, then its dependents are cancelled (deps_failed.lua)."""
        t = self.tasks[tid]
        self.cancel_done(tid)
        self.finished(t, ok=False)

    def cancel_leased(self, tid: str) -> None:
        """cancel_leased.lua: a flagged lease ends (ack, failure, release, expiry) as cancelled."""
        self.cancel_cascade(tid)

    def leave_rotation(self, part: str, user: str) -> None:
        """leave_rotation.lua: a user with no ready task left leaves the rotation, keeping its place,
        and is held no longer."""
        ready = self.ready[part]
        if not self.lanes_tidy(user):
            return
        self.held.pop(user, None)
        if user not in ready:
            return
        score = ready.pop(user)
        self.vfinish[part][user] = score
        if not ready:
            self.vclock[part] = score

    def cancel_task(self, tid: str, user: str | None = None, flag_running: bool = True) -> str:
        """cancel_task.lua's answer, and its effect."""
        t = self.tasks.get(tid)
        if t is None or (user is not None and t.user != user):
            return "not_found"
        if t.st == "leased":
            if not flag_running:
                return "running"
            t.cx = True
            return "cancelling"
        if t.st == "dead":
            return "finished"
        if t.st == "queued":
            self.lane_drop(t.user, t.prio, tid)  # (its id stays in its lane)
            self.leave_rotation(t.part, t.user)
        self.cancel_cascade(tid)  # (queued, delayed, or waiting: in no lane)
        return "cancelled"

    def cancel(self, tid: str, user: str | None = None, flag_running: bool = True) -> str:
        """TaskQueue.cancel: cancel_task.lua, and for a task gone, what its record says."""
        if tid not in self.tasks and user is not None and self.cancelled.get(tid) == user:
            return "cancelled"  # gone: its record says it was cancelled (TaskQueue.cancel reads it)
        return self.cancel_task(tid, user, flag_running)

    def cancel_queued(self, user: str, limit: int) -> tuple[int, int]:
        """cancel_queued.lua: up to limit of user's queued tasks, from the heads of its lanes."""
        ids: list[tuple[str, int]] = []
        for p in LANES:
            lane = self.lanes[user][p]
            while lane and len(ids) < limit:
                ids.append((lane.popleft(), p))
        n, part = 0, None
        for tid, p in ids:
            if self.is_queued(tid, user):
                part = self.tasks[tid].part
                self.cancel_cascade(tid)
                n += 1
            else:
                self.lane_stale(user, p, tid)
        if part is not None:
            self.leave_rotation(part, user)
        return n, sum(len(self.lanes[user][p]) for p in LANES)

    def cancel_tenant(self, user: str, running: bool, chunk: int) -> dict[str, int]:
        """TaskQueue.cancel_tenant step for step: the delayed set (scanned in score order: it is
        small), the lanes chunk by chunk, then (running) the leases."""
        counts = {"cancelled": 0, "cancelling": 0}
        delayed = sorted((t.due or 0, t.id) for t in self.tasks.values() if t.st == "delayed")
        for _, tid in delayed:
            answer = self.cancel_task(tid, user, running)
            if answer in counts:
                counts[answer] += 1
        calls_left: int | None = None
        while calls_left is None or calls_left > 0:
            done, left = self.cancel_queued(user, chunk)
            counts["cancelled"] += done
            if left <= 0:
                break
            calls_left = (left // chunk + 1) if calls_left is None else calls_left - 1
        if running:
            for tid in sorted(t.id for t in self.tasks.values() if t.st == "leased"):
                answer = self.cancel_task(tid, user, running)
                if answer in counts:
                    counts[answer] += 1
        return counts

    def cancel_fail(self, tid: str) -> None:
        """fail.lua on a flagged task (or failure type 'cancelled'): finished as cancelled."""
        self.cancel_leased(tid)

    def extend_lost(self, tid: str, token: str | None) -> bool:
        t = self.tasks.get(tid)
        return t is None or t.st != "leased" or t.token != token

    def requeue(self, ids: list[str]) -> list[str]:
        done = []
        for tid in ids:
            t = self.tasks.get(tid)
            if t is None or t.st != "dead":
                continue
            self.seq += 1
            t.r = 0
            t.seq = self.seq
            self.enqueue_ready(t, front=False)
            self.stat("requeued")
            done.append(tid)
        return done

    # --- views ---------------------------------------------------------------------------
    def fold(self, users: set[str]) -> tuple[set[str], set[str]]:
        """fold_idle.lua (window 0) over idle ``users``: their stats counters go, and each finish tag
        that changes nothing for them (at or behind the head of its rotation; with the rotation empty,
        the partition clock first moves up to it; garbage: dropped, repaired). Returns (folded, kept:
        a tag still ahead of a non-empty rotation, or a rate bucket not full again: a token used
        within the hour of the tests' 1/h rate)."""
        for key in [k for k in self.stats if k.startswith("u:") and k.rpartition(":")[0][2:] in users]:
            del self.stats[key]
        for user in users:  # lanes left with stale entries only go
            self.lanes_tidy(user)
        kept: set[str] = set()
        clocks: dict[str, float] = {}
        for user in sorted(users):
            for part in sorted(self.vfinish):
                tags = self.vfinish[part]
                if user not in tags:
                    continue
                tag = tags[user]
                if tag == GARBAGE:
                    self.stats["repaired"] += 1
                elif self.ready[part]:
                    if float(tag) > min(self.ready[part].values()):
                        kept.add(user)
                        continue
                else:
                    if part not in clocks:
                        clock = self.vclock.get(part, 0.0)
                        if clock == GARBAGE:
                            clock = self.vclock[part] = 0.0
                            self.stats["repaired"] += 1
                        clocks[part] = float(clock)
                    if float(tag) > clocks[part]:
                        self.vclock[part] = clocks[part] = float(tag)
                del tags[user]
        kept |= {user for user in users if self.tokens_used[user] > 0}
        return users - kept, kept

    def unfinished(self) -> Counter[str]:
        return Counter(t.user for t in self.tasks.values() if t.st not in ("dead", "waiting"))

    def by_state(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for t in self.tasks.values():
            out[t.st].add(t.id)
        return out
