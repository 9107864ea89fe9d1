"""The API's ops routes: ``/metrics`` (Prometheus), the jobs board, and /healthz's alerts.

``install(api, settings, tokens, producer)`` adds them to the producer API (``workers.api.app``) and
returns an :class:`Ops` whose :meth:`Ops.alerts` /healthz shows. Everything reads Redis at
request time through one :class:`~pipeline.ops.opsview.OpsView`, so any API replica answers for
the whole cluster.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from fastapi import FastAPI, Response

from pipeline.core import logs
from pipeline.core.settings import Settings
from pipeline.engine.distributed.jobstore import JobStore
from pipeline.ops.opsview import Alert, AlertKind, OpsView
from pipeline.ops.prometheus import CONTENT_TYPE, render
from workers.api import board, board_actions
from workers.api.auth import BoardAccess, Tokens
from workers.api.models import json_refusals
from workers.producer import Producer

_JOB_PATH = re.compile(r"/(j[0-9a-f]{20})(?=[/?\s]|$)")


class PrometheusText(Response):
    media_type = CONTENT_TYPE


def access_context(record: logging.LogRecord) -> dict[str, str]:
    """The job id in the path of an access-log line (uvicorn.access), if any:
    ``/v1/jobs/<id>/retry``, ``/board/jobs/<id>/log``."""
    if record.name != "uvicorn.access" or not isinstance(record.args, tuple):
        return {}
    for arg in record.args:
        match = _JOB_PATH.search(str(arg))
        if match:
            return {"job_id": match.group(1)}
    return {}


class Ops:
    def __init__(self, settings: Settings, store: Callable[[], JobStore]):
        self.settings = settings
        self._store = store
        self._view: OpsView | None = None

    def view(self) -> OpsView:
        if self._view is None:
            self._view = OpsView(self.settings, self._store())
        return self._view

    def alerts(self, redis_ok: bool = True) -> list[Alert]:
        """Alerts worth a page, for /healthz."""
        if not redis_ok:
            return [Alert(kind=AlertKind.REDIS_DOWN, message="Redis is unreachable.")]
        return self.view().snapshot().alerts


def install(
    api: FastAPI, settings: Settings, tokens: Tokens, producer: Callable[[], Producer]
) -> Ops:
    ops = Ops(settings, lambda: producer().store)
    logs.add_enricher(access_context)

    @api.get(
        "/metrics",
        tags=["ops"],
        operation_id="metrics",
        summary="Prometheus metrics",
        response_class=PrometheusText,
        responses={
            200: {"description": "The cluster's metrics (Prometheus' text exposition format)."},
            **json_refusals(503),
        },
    )
    def metrics() -> Response:
        """The cluster's metrics in Prometheus' text format, read from Redis at scrape time."""
        return PrometheusText(render(ops.view()))

    access = BoardAccess(tokens, public=settings.ops.public_board)
    api.include_router(board.router(ops.view, access))
    api.include_router(board_actions.router(board.environment(), access, tokens, producer))
    return ops
