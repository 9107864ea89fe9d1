"""The producer API seen from the command line: ``recast --api URL --token TOKEN`` submits,
lists, shows, cancels and retries jobs over HTTP (httpx) instead of reaching Redis, so a
producer needs nothing but the API's address and a token.

It returns what the API returns, as the API's own models (:class:`JobView`), so the commands
print the same in either mode. Every failure is a :class:`RecastError` with a stable code:

- the code of the API's error body (``{"error": {"code", ...}}``), e.g. ``source.forbidden``,
  ``request.not_found``, ``request.invalid``;
- ``request.unauthorized`` for a 401 (a missing or wrong token);
- ``service.unavailable`` for a 503 (Redis or the workers behind the API are down);
- ``api.unreachable`` when no usable answer came: connection refused, a name that does not
  resolve, a timeout, or an answer that is not the API's (a proxy's HTML page).
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from pipeline.core.card import Card
from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.job import JobStatus
from workers.api.clips import ClipResponse
from workers.api.models import Health, JobPage, JobView, RetryBatch, SubmitResponse

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
SUBMIT_TIMEOUT_S = 120.0
"""Submitting a playlist URL expands it in the request: give it longer than a read."""
MAX_PAGE = 1000
"""The largest page ``GET /v1/jobs`` gives (its ``limit``)."""

KNOWN_CODES = frozenset(code.value for code in ErrorCode)

Model = TypeVar("Model", bound=BaseModel)


class ApiClient:
    """A client of one API (``base_url``, e.g. ``https://recast.example.org``)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout_s: float = READ_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            follow_redirects=False,
            transport=transport,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- jobs ------------------------------------------------------------------------------------

    def submit(
        self,
        sources: list[str],
        *,
        event: str | None,
        priority: int,
        force: bool,
        options: dict[str, Any],
    ) -> list[tuple[JobView, bool]]:
        """``POST /v1/jobs``, then each job it names: (the job, whether it is new)."""
        body: dict[str, Any] = {"urls": sources, "priority": priority, "force": force}
        if event is not None:
            body["event"] = event
        if options:
            body["options"] = options
        answer = self._call("POST", "/v1/jobs", SubmitResponse, json=body, timeout=SUBMIT_TIMEOUT_S)
        return [(self.get(job.id), job.new) for job in answer.jobs]

    def get(self, job_id: str) -> JobView:
        return self._call("GET", f"/v1/jobs/{_segment(job_id)}", JobView)

    def create_clip(self, card_id: str, body: dict[str, Any]) -> ClipResponse:
        """``POST /v1/cards/{card_id}/clips`` (the body as :class:`ClipBody` takes it)."""
        path = f"/v1/cards/{_segment(card_id)}/clips"
        return self._call("POST", path, ClipResponse, json=body)

    def set_poster(self, card_id: str, time_s: float) -> Card:
        """``POST /v1/cards/{card_id}/poster``: the card as published with its new poster."""
        path = f"/v1/cards/{_segment(card_id)}/poster"
        return self._call("POST", path, Card, json={"time": time_s})

    def list_jobs(
        self, *, status: JobStatus | None, event: str | None, limit: int
    ) -> list[JobView]:
        """Up to ``limit`` jobs, newest first, over as many pages as it takes (the cursor is
        whatever ``next_cursor`` was, passed back as it came)."""
        found: list[JobView] = []
        cursor: Any = None
        while len(found) < limit:
            params: dict[str, Any] = {"limit": min(MAX_PAGE, limit - len(found))}
            if status is not None:
                params["state"] = str(status)
            if event is not None:
                params["event"] = event
            if cursor is not None:
                params["cursor"] = cursor
            page = self._call("GET", "/v1/jobs", JobPage, params=params)
            found.extend(page.jobs)
            cursor = page.next_cursor
            if cursor is None or not page.jobs:
                break
        return found[:limit]

    def cancel(self, job_id: str) -> JobView:
        return self._call("POST", f"/v1/jobs/{_segment(job_id)}/cancel", JobView)

    def retry(self, job_id: str) -> JobView:
        return self._call("POST", f"/v1/jobs/{_segment(job_id)}/retry", JobView)

    def retry_failed(self, code: ErrorCode) -> list[str]:
        answer = self._call("POST", "/v1/jobs/retry", RetryBatch, params={"error": str(code)})
        return answer.retried

    def health(self) -> Health:
        """``GET /healthz``: its body whether the cluster is whole (200) or not (503)."""
        response = self._send("GET", "/healthz")
        if response.status_code not in (200, 503):
            raise self._refusal(response)
        return self._parse(response, Health)

    # -- HTTP ------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, model: type[Model], **request: Any) -> Model:
        response = self._send(method, path, **request)
        if response.status_code >= 300:
            raise self._refusal(response)
        return self._parse(response, model)

    def _send(self, method: str, path: str, **request: Any) -> httpx.Response:
        where = f"{self.base_url}{path}"
        try:
            return self.http.request(method, path, **request)
        except httpx.TimeoutException as exc:
            raise RecastError(
                ErrorCode.API_UNREACHABLE, f"The API did not answer in time ({where}): {exc}"
            ) from exc
        except httpx.HTTPError as exc:
            raise RecastError(
                ErrorCode.API_UNREACHABLE, f"The API at {self.base_url} is unreachable: {exc}"
            ) from exc

    def _parse(self, response: httpx.Response, model: type[Model]) -> Model:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._not_the_api(response) from exc

    def _refusal(self, response: httpx.Response) -> RecastError:
        status = response.status_code
        said = _error_body(response)
        message = said.get("message") or f"HTTP {status}"
        if status == 401:
            return RecastError(
                ErrorCode.REQUEST_UNAUTHORIZED,
                f"The API at {self.base_url} refused the token (HTTP 401); give the right one "
                "with --token or RECAST_API_TOKEN.",
            )
        if status == 503:
            return RecastError(
                ErrorCode.SERVICE_UNAVAILABLE,
                f"The API at {self.base_url} is up but the cluster behind it is not "
                f"(HTTP 503): {message}",
            )
        code = said.get("code", "")
        if code in KNOWN_CODES:
            return RecastError(ErrorCode(code), message)
        if not said:
            return self._not_the_api(response)
        fallback = ErrorCode.REQUEST_INVALID if status < 500 else ErrorCode.SERVICE_UNAVAILABLE
        return RecastError(
            fallback, f"The API refused the request (HTTP {status}, {code}): {message}"
        )

    def _not_the_api(self, response: httpx.Response) -> RecastError:
        kind = response.headers.get("content-type", "no content type")
        return RecastError(
            ErrorCode.API_UNREACHABLE,
            f"{response.request.url} answered HTTP {response.status_code} ({kind}), not as "
            "Recast's API does: check the --api URL.",
        )


def _segment(job_id: str) -> str:
    """A job id as one path segment, whatever was typed."""
    return quote(job_id, safe="")


def _error_body(response: httpx.Response) -> dict[str, str]:
    """The API's ``{"error": {...}}`` as strings, or {} for any other body."""
    try:
        data = response.json()
    except ValueError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return {}
    return {key: str(value) for key, value in error.items() if isinstance(value, str)}
