"""The host gate in Redis: every worker sees the same paused hosts and download slots.

The rules are :class:`pipeline.core.hostgate.HostState`'s, the same as the local executor's;
this module only keeps the states. One key per host (``host:<host>``, see
:mod:`pipeline.engine.distributed.keys`) holds its state as JSON, changed in a WATCH/MULTI
transaction in Redis server time, so workers' clocks need not agree. The key expires once
the state no longer matters (a pause ended a window ago, no slot or refusal left), and is
deleted when the host is back to as good as never seen. Operations are retried while Redis is
unreachable, like the job store's (``cluster.redis_outage_s``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis

from pipeline.core.hostgate import HostGate, HostState
from pipeline.core.settings import HostBackoffSettings
from pipeline.engine.distributed.jobstore import JobStore

T = TypeVar("T")


class RedisHostGate(HostGate):
    """The gates of every source host, for the whole cluster (the job store's Redis)."""

    def __init__(self, store: JobStore, policy: HostBackoffSettings):
        super().__init__(policy)
        self.store = store
        self.redis: redis.Redis = store.redis
        self.keys = store.keys

    def _change(self, host: str, change: Callable[[HostState, float], T]) -> T:
        key = self.keys.source_host(host)

        def once() -> T:
            with self.redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)  # type: ignore[no-untyped-call]
                        now = _seconds(pipe.time())
                        raw = pipe.get(key)
                        state = HostState() if raw is None else HostState.model_validate_json(raw)
                        result = change(state, now)
                        pipe.multi()
                        if state.idle():
                            pipe.delete(key)
                        else:
                            ttl_ms = max(1, int(state.keep_for(now, self.policy) * 1000))
                            pipe.set(key, state.model_dump_json(), px=ttl_ms)
                        pipe.execute()
                        return result
                    except redis.WatchError:
                        continue

        return self.store.retrying(once, f"host gate {host}")

    def _states(self) -> tuple[float, dict[str, HostState]]:
        """Read once, without retries: the ops views say at once that Redis is down."""
        now = _seconds(self.redis.time())
        keys = list(self.redis.scan_iter(match=self.keys.source_host_pattern, count=500))
        if not keys:
            return now, {}
        states: dict[str, HostState] = {}
        for key, raw in zip(keys, cast(list[Any], self.redis.mget(keys)), strict=True):
            host = self.keys.host_of(key)
            if raw is not None and host is not None:
                states[host] = HostState.model_validate_json(raw)
        return now, states


def _seconds(server_time: Any) -> float:
    seconds, micros = server_time
    return float(seconds) + float(micros) / 1_000_000
