"""``/docs``: Swagger UI served by the API itself, from files of the ``fastapi-swagger`` package.

FastAPI's own docs page loads Swagger UI from a CDN and configures it with an inline script;
this one references only the API's own URLs (``/docs/assets/…``, the OpenAPI document), so it
works on a closed network and under a Content-Security-Policy without ``unsafe-inline``
scripts. ReDoc is not offered (``create_api`` turns it off).
"""

from __future__ import annotations

from functools import lru_cache
from html import escape
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from pipeline.core.errors import ErrorCode, RecastError
from workers.api.models import json_refusals

ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
INIT_SCRIPT = """"use strict";
(() => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
"""
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""Swagger UI styles elements inline (React ``style``), so styles need ``unsafe-inline``."""
MAX_AGE_S = 86400


@lru_cache(maxsize=len(ASSET_TYPES))
def asset(name: str) -> bytes:
    """One of Swagger UI's files as the ``fastapi-swagger`` package ships them."""
    return (resources.files("fastapi_swagger") / "resources" / name).read_bytes()


def page(title: str, root_path: str, openapi_url: str) -> str:
    assets = f"{root_path}/docs/assets"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(root_path + openapi_url)}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/init.js"></script>
</body>
</html>
"""


def install(api: FastAPI) -> None:
    """Add ``/docs`` and its assets (the app must be made with ``docs_url=None``)."""
    routes = APIRouter(tags=["docs"])
    title = f"{api.title} - Swagger UI"
    openapi_url = api.openapi_url or "/openapi.json"

    @routes.get(
        "/docs",
        response_class=HTMLResponse,
        operation_id="showDocs",
        summary="This documentation",
    )
    def docs(request: Request) -> HTMLResponse:
        """Swagger UI over ``/openapi.json``."""
        root_path = str(request.scope.get("root_path", "")).rstrip("/")
        return HTMLResponse(
            page(title, escape(root_path), openapi_url),
            headers={"Content-Security-Policy": CSP},
        )

    @routes.get(
        "/docs/assets/{name}",
        operation_id="getDocsAsset",
        summary="A file of Swagger UI",
        response_class=Response,
        responses={
            200: {
                "description": "The file (script, style sheet or icon).",
                "content": {
                    media_type: {"schema": {"type": "string"}}
                    for media_type in dict.fromkeys(ASSET_TYPES.values())
                },
            },
            **json_refusals(404, 422),
        },
    )
    def docs_asset(name: str) -> Response:
        """Swagger UI's scripts, style sheet and icons, from the ``fastapi-swagger`` package."""
        cache = {"Cache-Control": f"public, max-age={MAX_AGE_S}"}
        if name == "init.js":
            return Response(
                INIT_SCRIPT, media_type=ASSET_TYPES["swagger-ui-bundle.js"], headers=cache
            )
        if name not in ASSET_TYPES:
            raise RecastError(ErrorCode.REQUEST_NOT_FOUND, f"There is no asset {name}.")
        return Response(asset(name), media_type=ASSET_TYPES[name], headers=cache)

    api.include_router(routes)
