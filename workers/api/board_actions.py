"""The board's writes: log in and out (the board's cookie), retry and cancel a job from the page.

``POST /board/login`` takes a form (``token=…``): from the login page it answers with a
redirect to the board, or the form again with 401; from the board's own script (which sends
``X-Recast-Board``) it answers JSON. ``POST /board/logout`` drops the cookie.
``POST /board/jobs/{id}/retry|cancel`` do what ``/v1/jobs/{id}/retry|cancel`` do, for a
browser logged in to the board (cookie and ``X-Recast-Board``) or a bearer token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment

from pipeline.core.errors import ErrorCode, RecastError
from workers.api.auth import ACTION_HEADER, COOKIE, SESSION_S, BoardAccess, Tokens, unauthorized
from workers.api.board import login_page, root_of
from workers.api.models import HTML_PAGE, JOB_ID_PATTERN, BoardLogin, JobView, refusals
from workers.producer import Producer

MAX_TOKEN_CHARS = 4096
LOGIN_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"token": {"type": "string", "maxLength": MAX_TOKEN_CHARS}},
                    "required": ["token"],
                }
            }
        },
    }
}
ERROR_SCHEMA: dict[str, Any] = {"$ref": "#/components/schemas/ErrorResponse"}


def router(
    env: Environment, access: BoardAccess, tokens: Tokens, producer: Callable[[], Producer]
) -> APIRouter:
    routes = APIRouter(tags=["board"])

    @routes.get(
        "/board/login",
        response_class=HTMLResponse,
        operation_id="showBoardLogin",
        summary="The board's login form",
    )
    def login_form(request: Request) -> Response:
        """The form that posts a token to ``/board/login``."""
        return login_page(env, request)

    @routes.post(
        "/board/login",
        operation_id="logInToBoard",
        summary="Log in to the board",
        response_model=BoardLogin,
        openapi_extra=LOGIN_FORM,
        responses={
            303: {"description": "From the login page: to the board, with the cookie set."},
            401: {
                "content": {**HTML_PAGE, "application/json": {"schema": ERROR_SCHEMA}},
                "description": "Not a token of api.tokens: the form again, or (from the "
                "board's script) `request.unauthorized`.",
            },
            **refusals(413),
        },
    )
    async def login(request: Request) -> Response:
        """Take a form's ``token``; set the board's login cookie (JSON answer when the board's
        script sends ``X-Recast-Board``, else a redirect to the board)."""
        token = _form_token(await request.body())
        from_script = bool(request.headers.get(ACTION_HEADER))
        if not tokens.valid(token):
            if from_script:
                raise unauthorized("That token is not one of api.tokens.")
            return login_page(env, request, 401, "That token is not valid. Try again.")
        response: Response = (
            JSONResponse({"logged_in": True})
            if from_script
            else RedirectResponse(f"{root_of(request)}/board", status_code=303)
        )
        response.set_cookie(
            COOKIE,
            tokens.session(token),
            max_age=SESSION_S,
            path=f"{root_of(request)}/board",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    @routes.post(
        "/board/logout",
        operation_id="logOutOfBoard",
        summary="Log out of the board",
        response_model=BoardLogin,
        responses={303: {"description": "To the login form, the cookie dropped."}},
    )
    def logout(request: Request) -> Response:
        """Drop the board's login cookie."""
        response: Response = (
            JSONResponse({"logged_in": False})
            if request.headers.get(ACTION_HEADER)
            else RedirectResponse(f"{root_of(request)}/board/login", status_code=303)
        )
        response.delete_cookie(
            COOKIE,
            path=f"{root_of(request)}/board",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    @routes.post(
        "/board/jobs/{job_id}/{action}",
        status_code=202,
        operation_id="actOnJobFromBoard",
        summary="Retry or cancel a job from the board",
        responses=refusals(401, 404, 409, 413, 422, 503),
    )
    def act(
        request: Request,
        job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)],
        action: Literal["retry", "cancel"],
    ) -> JobView:
        """Retry or cancel a job from the board (needs a token, even on a public board)."""
        access.require(request, action=True)
        current = producer()
        if current.get(job_id) is None:
            raise RecastError(ErrorCode.REQUEST_NOT_FOUND, f"There is no job {job_id}.")
        record = current.retry(job_id) if action == "retry" else current.cancel(job_id)
        return JobView.of(record)

    return routes


def _form_token(body: bytes) -> str:
    """The ``token`` field of an urlencoded form ("" when there is none)."""
    try:
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    except ValueError:  # more fields than a login form has
        return ""
    values = fields.get("token", [""])
    return values[0].strip()[:MAX_TOKEN_CHARS]
