"""The one worker liveness rule (core.observe.worker_liveness), driven by the test clock: no Redis."""

from __future__ import annotations

from fairque_django.core.observe import worker_liveness
from tests.support import Clock

STALE, DOWN = 15.0, 30.0


def liveness(clock: Clock, **traces: float | None) -> tuple[str, float | None]:
    seen = {"last_beat": None, "last_seen": None, "stopped_at": None, **traces}
    state = worker_liveness(**seen, now=clock.now(), stale=STALE, down=DOWN)
    return state.status, state.heartbeat_age


def test_a_worker_goes_from_alive_to_stale_to_down_as_its_heartbeat_ages() -> None:
    clock = Clock()
    beat = clock.now()
    assert liveness(clock) == ("never seen", None)
    assert liveness(clock, last_beat=beat, last_seen=beat) == ("alive", 0.0)
    clock.advance(STALE)
    assert liveness(clock, last_beat=beat, last_seen=beat) == ("alive", STALE)
    clock.advance(1)
    assert liveness(clock, last_beat=beat, last_seen=beat) == ("stale", STALE + 1)
    clock.advance(DOWN - STALE)
    assert liveness(clock, last_beat=beat, last_seen=beat) == ("down", DOWN + 1)


def test_a_clean_stop_reads_down_at_once_and_a_later_beat_alive_again() -> None:
    clock = Clock()
    beat = clock.now()
    stopped = clock.advance(1)
    assert liveness(clock, last_beat=None, last_seen=stopped, stopped_at=stopped) == ("down", 0.0)
    again = clock.advance(5)
    assert liveness(clock, last_beat=again, last_seen=again, stopped_at=stopped) == ("alive", 0.0)
    assert beat < stopped < again
