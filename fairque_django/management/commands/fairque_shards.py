"""``manage.py fairque_shards``: where tenants' unfinished tasks live, and moving the misplaced ones.

After ``queue.shards`` or ``queue.shard_pins`` changed, tenants whose keyspace changed still have
tasks in their old one. Without options the command lists them; ``--move`` moves each (see
``fairque_django.core.reshard``); ``--from-shards N`` reads the layout of N shards (the former
``queue.shards``: a shard's hash tag depends on the number of shards).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fairque_django.conf import get_config, get_redis_client
from fairque_django.core.reshard import holders, misplaced, move_tenant
from fairque_django.core.shards import shard_map


class Command(BaseCommand):
    help = "List the tenants whose tasks live in another shard than their own, and move them (--move)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from-shards", type=int, default=None,
                            help="the former queue.shards: read the tenants' tasks in that layout")
        parser.add_argument("--move", action="store_true", help="move every misplaced tenant to its shard")
        parser.add_argument("--tenant", default=None, help="only this tenant")
        parser.add_argument("--wait", type=float, default=300.0,
                            help="seconds to wait for a tenant's running tasks in its old shard")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        config, client = get_config(), get_redis_client()
        shards = options["from_shards"]
        if shards is not None and shards < 1:
            raise CommandError("--from-shards must be at least 1")
        found = misplaced(config, client, shards)
        if options["tenant"] is not None:
            found = [row for row in found if row[0] == options["tenant"]]
        if not options["move"]:
            per_shard: dict[int, int] = {}
            for held in holders(config, client, shards).values():
                for shard in held:
                    per_shard[shard] = per_shard.get(shard, 0) + 1
            if options["json"]:
                self.stdout.write(json.dumps({"shards": shards or config.queue.shards, "tenants_per_shard": per_shard,
                                              "misplaced": [list(row) for row in found]}))
                return
            self.stdout.write(f"{shards or config.queue.shards} shard(s); tenants with unfinished tasks per shard: "
                              + (", ".join(f"{s}: {n}" for s, n in sorted(per_shard.items())) or "none"))
            for user, shard, target in found:
                self.stdout.write(f"misplaced: {user} has tasks in shard {shard}, belongs to shard {target}")
            if not found:
                self.stdout.write("no misplaced tenant")
            return
        mapping = shard_map(config.queue)
        reports = []
        for user, shard, _ in found:
            try:
                report = move_tenant(config, client, user, shard, from_shards=shards, wait_seconds=options["wait"])
            except TimeoutError as exc:
                raise CommandError(str(exc)) from exc
            reports.append(report)
            left = report.left.get("unfinished", 0)
            self.stdout.write(f"moved {user}: {report.moved} task(s) from shard {shard} to {mapping.of(user)}"
                              + (f"; {left} unfinished left there (waiting or dead-lettered)" if left else ""))
        if not reports:
            self.stdout.write("no misplaced tenant")
