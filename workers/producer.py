"""What producers do, for the API and the CLI: submit, follow, cancel and retry jobs.

Submitting checks every source against the URL policy before anything is created (each host
is resolved once, the hosts of one request at the same time), then records one job per source
and returns at once: a URL's job waits for a worker to look it up (``recast.expand``, sent
through the outbox: :mod:`pipeline.engine.distributed.expansion`), which runs it as a single
video under the same id, or makes it the parent of one job per playlist entry
(``record.expansion.children``). A local file (the CLI's) cannot be a playlist: its job is
scheduled at once. The same source and options submitted before give the existing job (unless
forced). Cancelling a playlist's parent cancels its entries' active jobs; retrying it retries
its failed or cancelled ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobSpec, JobStatus
from pipeline.core.settings import Settings
from pipeline.engine.distributed.coordinator import Coordinator, JobConflict
from pipeline.engine.distributed.expansion import Expander
from pipeline.engine.distributed.jobstore import JobPosition, JobRecord, JobStore, KeysetPage
from pipeline.publish.clips import ClipPlan
from pipeline.stages.ingest import check_source, local_path, url_policy
from workers.dispatch import CeleryDispatcher
from workers.runtime import make_publisher

RESOLVERS = 16
"""Host look-ups of one submission running at the same time."""


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
        self.dispatcher = CeleryDispatcher(self.app, settings)
        self.coordinator = Coordinator(
            settings, self.store, self.dispatcher, publisher=make_publisher(settings)
        )
        self.expander = Expander(self.coordinator)

    def check_all(self, sources: Sequence[str], *, allow_local: bool) -> None:
        """Refuse the first source (in order) that may not be fetched. Everything that needs
        only the URL is checked per source; each (host, port) is resolved once, all of them
        at the same time."""
        policy = url_policy(self.settings)
        targets: dict[str, tuple[str, int]] = {}
        for source in sources:
            if local_path(source) is None:
                targets[source] = policy.target(source)
            elif not allow_local:
                raise RecastError(
                    ErrorCode.SOURCE_FORBIDDEN, "Only http and https URLs are accepted here."
                )
            else:
                check_source(source, self.settings)
        hosts = list(dict.fromkeys(targets.values()))
        if not hosts:
            return
        with ThreadPoolExecutor(min(RESOLVERS, len(hosts))) as pool:
            found = pool.map(lambda target: _refusal(policy.resolve, target), hosts)
            refusals = dict(zip(hosts, found, strict=True))
        for target in targets.values():
            refusal = refusals[target]
            if refusal is not None:
                raise refusal

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
        """One job per distinct source, every source checked first. A URL's job is returned
        waiting for its expansion (``record.expansion``); follow it for the playlist's jobs."""
        self.check_all(sources, allow_local=allow_local)
        if callback_url:
            url_policy(self.settings).check_url(callback_url)
        submitted: dict[str, Submitted] = {}
        for source in sources:
            spec = JobSpec(
                source=source,
                event=event,
                options=dict(options or {}),
                callback_url=callback_url,
                priority=priority,
            )
            if spec.job_id in submitted:
                continue
            if local_path(source) is not None:
                record, created = self.coordinator.submit(spec, force=force)
            else:
                submission = self.expander.submit(spec, force=force)
                record, created = submission.record, submission.created
            submitted[spec.job_id] = Submitted(record, created)
        return list(submitted.values())

    def submit_clip(
        self,
        plan: ClipPlan,
        *,
        event: str | None = None,
        priority: int = 5,
        options: dict[str, Any] | None = None,
        callback_url: str | None = None,
        force: bool = False,
    ) -> Submitted:
        """The job of a planned clip (:func:`pipeline.publish.clips.plan_clip`), scheduled at
        once: nothing is looked up, its media is cut from the parent's. The same clip asked
        again gives the existing job (unless ``force``)."""
        if callback_url:
            url_policy(self.settings).check_url(callback_url)
        spec = plan.spec.job_spec(
            event=event, priority=priority, callback_url=callback_url, options=options
        )
        record, created = self.coordinator.submit(spec, force=force)
        return Submitted(record, created)

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        event: str | None = None,
        since: datetime | None = None,
        after: JobPosition | None = None,
        limit: int = 50,
    ) -> KeysetPage:
        """Jobs newest first; pass the page's ``next`` as ``after`` for the next page."""
        return self.store.page_jobs(
            status=status, event=event, since=since, after=after, limit=limit
        )

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job; a playlist's parent: its entries' jobs still queued or running."""
        return self.expander.cancel(job_id)

    def retry(self, job_id: str) -> JobRecord:
        """Run a failed or cancelled job again: from the stages that did not finish, from its
        expansion if that did not finish; a playlist's parent: its failed or cancelled
        entries' jobs."""
        return self.expander.retry(job_id)

    def retry_failed(self, code: ErrorCode) -> list[str]:
        """Retry every failed job whose error has ``code``; returns their ids."""
        retried = []
        for record in list(self.store.iter_status(JobStatus.FAILED)):
            if record.state.error is not None and record.state.error.code == code:
                try:
                    self.retry(record.id)
                except JobConflict:
                    continue
                retried.append(record.id)
        return retried


def _refusal(resolve: Callable[[str, int], object], target: tuple[str, int]) -> RecastError | None:
    try:
        resolve(*target)
    except RecastError as refused:
        return refused
    return None
