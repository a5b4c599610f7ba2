"""The FastAPI application of `bt serve`: routes, the page, errors, and the guard."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import FileResponse, Response

from btmanager import __version__
from btmanager.serve import errors, routes
from btmanager.serve.config import ServeConfig
from btmanager.serve.guard import Guard
from btmanager.serve.state import ServeState

STATIC = Path(__file__).resolve().parent / "static"


def create_app(config: ServeConfig) -> FastAPI:
    state = ServeState(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        keeper = threading.Thread(target=state.housekeeping, name="bt-housekeeping", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            state.shutdown.set()
            state.loop_reads.close()

    app = FastAPI(
        title="bt serve",
        version=__version__,
        description="The `bt` run manager over HTTP: the CLI's operations and JSON shapes.",
        # Swagger UI and ReDoc load their assets from a CDN: off, so nothing needs the internet.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        default_response_class=errors.BtJSONResponse,
    )
    app.state.bt = state
    errors.install(app)
    app.include_router(routes.router)

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # The last added runs first: CORS answers preflights (which carry no token) before the guard.
    app.add_middleware(
        Guard,
        token=config.token,
        host=config.host,
        cors=config.cors,
        max_body=config.max_body,
    )
    if config.cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["Retry-After", "Location", "Content-Disposition"],
            max_age=600,
        )
    return app
