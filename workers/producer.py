"""What producers do, for the API and the CLI: submit, follow, cancel and retry jobs.

Submitting checks every URL against the URL policy before anything is created, expands
playlists into one job per entry, and returns the existing job for a source and options
submitted before (unless forced).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.settings import Settings
from pipeline.engine.distributed.coordinator import Coordinator
from pipeline.engine.distributed.jobstore import JobRecord, JobStore, Page
from pipeline.stages.ingest import check_source, expand, local_path, url_policy
from workers.dispatch import CeleryDispatcher
from workers.runtime import make_publisher


@dataclass(frozen=True)
class Submitted:
    record: JobRecord
    created: bool


class Producer:
    def __init__(
        self, settings: Settings, app: Celery | None = None, store: JobStore | None = None
    ):
        from workers.app import create_celery

        self.settings = settings
        self.store = store or JobStore(settings.cluster)
        self.app = app or create_celery(settings)
        self.coordinator = Coordinator(
            settings,
            self.store,
            CeleryDispatcher(self.app, settings),
            publisher=make_publisher(settings),
        )

    def check(self, source: str, *, allow_local: bool) -> None:
        if local_path(source) is not None and not allow_local:
            raise RecastError(
                ErrorCode.SOURCE_FORBIDDEN, "Only http and https URLs are accepted here."
            )
        check_source(source, self.settings)

    def submit(
        self,
        sources: Sequence[str],
        *,
        event: str | None = None,
        priority: int = 5,
        options: dict[str, Any] | None = None,
        callback_url: str | None = None,
        force: bool = False,
        allow_local: bool = False,
    ) -> list[Submitted]:
        """One job per source (per playlist entry); every source is checked first."""
        for source in sources:
            self.check(source, allow_local=allow_local)
        if callback_url:
            url_policy(self.settings).check_url(callback_url)
        expanded: list[str] = []
        for source in sources:
            for entry in expand(source, self.settings):
                if entry not in expanded:
                    expanded.append(entry)
        submitted = []
        for source in expanded:
            spec = JobSpec(
                source=source,
                event=event,
                options=dict(options or {}),
                callback_url=callback_url,
                priority=priority,
            )
            record, created = self.coordinator.submit(spec, force=force)
            submitted.append(Submitted(record, created))
        return submitted

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        event: str | None = None,
        since: datetime | None = None,
        cursor: int = 0,
        limit: int = 50,
    ) -> Page:
        return self.store.list_jobs(
            status=status, event=event, since=since, cursor=cursor, limit=limit
        )

    def cancel(self, job_id: str) -> JobRecord:
        return self.coordinator.cancel(job_id)

    def retry(self, job_id: str) -> JobRecord:
        return self.coordinator.retry(job_id)

    def retry_failed(self, code: ErrorCode) -> list[str]:
        return self.coordinator.retry_failed(code)
