"""Schedule timing without Redis: cron in a time zone across DST (a daily 02:30 in Europe/Berlin on
the days the clocks change), every-N-seconds ticks, which ticks are due / missed / skipped, and the
checks of FAIRQUE["SCHEDULES"]."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fairque_django.core.errors import ConfigurationError
from fairque_django.core.schedule import (
    Schedule,
    forget_schedule,
    parse_schedules,
    periodic,
    registered_schedules,
    schedule_task_id,
)

BERLIN = ZoneInfo("Europe/Berlin")


def daily(at: str = "30 2 * * *", **kw: object) -> Schedule:
    return Schedule(name="daily", task="app.tasks.report", cron=at, timezone="Europe/Berlin", user="a", **kw)  # type: ignore[arg-type]


def local(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, BERLIN)


def ts(*parts: int, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=BERLIN, fold=fold).timestamp()  # type: ignore[misc]


def test_spring_forward_a_time_in_the_skipped_hour_runs_at_the_transition() -> None:
    """2024-03-31 02:00 -> 03:00 in Berlin: 02:30 does not exist that day; cron (Debian) runs the
    job once, at 03:00 CEST, and at 02:30 on the other days."""
    s = daily()
    first = s.next_after(ts(2024, 3, 30, 12))
    assert local(first) == datetime(2024, 3, 31, 3, 0, tzinfo=BERLIN)
    second = s.next_after(first)
    assert local(second) == datetime(2024, 4, 1, 2, 30, tzinfo=BERLIN)
    assert second - first == 23.5 * 3600
    assert s.latest_at(second - 1) == first


def test_fall_back_a_time_in_the_repeated_hour_runs_once() -> None:
    """2024-10-27 03:00 -> 02:00 in Berlin: 02:30 happens twice; the job runs once (the first)."""
    s = daily()
    first = s.next_after(ts(2024, 10, 26, 12))
    assert local(first).utcoffset() == timedelta(hours=2)  # 02:30 CEST, the first 02:30
    assert (local(first).hour, local(first).minute) == (2, 30)
    second = s.next_after(first)
    assert local(second) == datetime(2024, 10, 28, 2, 30, tzinfo=BERLIN)
    assert second - first == 25 * 3600  # no second run in the repeated hour


def test_an_hourly_cron_across_fall_back_runs_in_each_real_hour() -> None:
    s = daily("0 * * * *")
    t = s.next_after(ts(2024, 10, 27, 0, 30))
    seen = []
    for _ in range(5):
        seen.append(t)
        t = s.next_after(t)
    assert [b - a for a, b in itertools.pairwise(seen)] == [3600] * 4


def test_a_tick_is_due_once_and_a_clock_in_between_changes_nothing() -> None:
    s = daily()
    tick = s.next_after(ts(2024, 3, 30, 12))
    before = s.latest_at(tick - 1)
    assert before is not None and local(before) == datetime(2024, 3, 30, 2, 30, tzinfo=BERLIN)
    assert s.due(before, tick - 1) == ([], None)
    assert s.due(before, tick + 0.5) == ([tick], None)
    assert s.due(tick, tick + 5) == ([], None)


def test_missed_ticks_catch_up_or_skip() -> None:
    s = daily()
    tick = s.next_after(ts(2024, 3, 30, 12))
    before = s.latest_at(tick - 1)
    later = tick + 3 * 3600  # no worker was up from before the tick until three hours after
    assert s.due(before, later) == ([tick], None)  # catch_up (default): fires once, late
    assert daily(catch_up=False).due(before, later) == ([], tick)  # skipped
    # two days down: the two missed ticks fire once in all (as the latest of them)
    after = s.next_after(tick)
    assert s.due(before, after + 3600) == ([after], None)
    assert daily(catch_up=False).due(before, after + 3600) == ([], after)


def test_never_fired_fires_only_the_current_tick() -> None:
    s = Schedule(name="e", task="t", every=1, user="a")
    assert s.due(None, 100.5) == ([100], None)
    assert s.due(90, 100.5) == (list(range(91, 101)), None)  # within grace: each late tick fires
    assert s.due(50, 100.5) == ([90, *range(91, 101)], None)  # older than 10 s: coalesced into one


def test_six_field_cron_has_seconds_first() -> None:
    s = Schedule(name="s", task="t", cron="*/15 * * * * *", user="a")
    assert s.next_after(1_900_000_800) == 1_900_000_815


def test_task_ids_are_per_schedule_tick_and_tenant() -> None:
    assert schedule_task_id("n", 5, "org:1") == "sched:n:5:org:1"
    long_id = schedule_task_id("n", 5, "x" * 300)
    assert len(long_id) <= 200 and long_id != schedule_task_id("n", 5, "y" * 300)


@pytest.mark.parametrize(("entry", "message"), [
    ({"task": "t", "user": "a"}, "give exactly one of cron and every"),
    ({"task": "t", "every": 5, "cron": "* * * * *", "user": "a"}, "give exactly one of cron and every"),
    ({"task": "t", "every": 5}, "give exactly one of user and tenants"),
    ({"task": "t", "every": 0.5, "user": "a"}, "every: must be >= 1"),
    ({"task": "t", "every": 2.5, "user": "a"}, "every: must be whole seconds"),
    ({"task": "t", "cron": "61 * * * *", "user": "a"}, "cron: bad cron expression"),
    ({"task": "t", "cron": "* * * * *", "user": "a", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"task": "t", "every": 5, "tenants": "org:*"}, "write a list for ids or patterns"),
    ({"task": "t", "every": 5, "user": "a", "priority": 9}, "priority: must be <= 6"),
    ({"task": "t", "every": 5, "user": "a b"}, "user"),
    ({"every": 5, "user": "a"}, "task: is required"),
    ({"task": "t", "evry": 5, "user": "a"}, "did you mean 'every'"),
])
def test_bad_schedules_are_named_clearly(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match="SCHEDULES") as info:
        parse_schedules({"nightly": entry})
    assert message in str(info.value), str(info.value)
    assert '"nightly"' in str(info.value) or "'nightly'" in str(info.value)


def test_schedules_from_settings_get_the_project_time_zone() -> None:
    (s,) = parse_schedules({"n": {"task": "t", "cron": "0 3 * * *", "tenants": ["org:*"]}},
                           timezone_name="Europe/Berlin")
    assert s.timezone == "Europe/Berlin" and s.tenants == ("org:*",) and s.catch_up


def cleanup(n: int) -> int:
    return n


def test_periodic_registers_a_task_and_its_schedule() -> None:
    # registered here, not at import: a configuration loaded meanwhile by another test would keep it
    task = periodic(every=timedelta(minutes=5), tenants=["org:1", "org:2"], name="unit-periodic", args=[1])(cleanup)
    try:
        check_registered(task)
    finally:  # other tests' workers would fire it
        forget_schedule("unit-periodic")


def check_registered(cleanup: Any) -> None:
    assert cleanup.run(3) == 3
    found = {s.name: s for s in registered_schedules("Europe/Berlin")}["unit-periodic"]
    assert found.every == 300 and found.task == cleanup.name and found.timezone == "Europe/Berlin"
    with pytest.raises(ConfigurationError, match="whole seconds"):
        periodic(every=timedelta(milliseconds=1500), user="a")


def test_every_schedule_key_is_in_schedules_md_with_its_default() -> None:
    """docs/schedules.md's settings table lists exactly the SCHEDULE schema's keys, with defaults."""
    import re
    from pathlib import Path

    from fairque_django.core.config.schema import SCHEDULE, doc_default

    text = (Path(__file__).resolve().parents[2] / "docs" / "schedules.md").read_text().split("## Settings", 1)[1]
    text = text.split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|", text, flags=re.MULTILINE))
    assert list(rows) == list(SCHEDULE.names)
    for spec in SCHEDULE.fields:
        assert rows[spec.name].strip("`") == doc_default(spec), (spec.name, rows[spec.name])
