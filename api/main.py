"""The FastAPI application: assembles routers, error handlers and the dashboard."""
from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from api import docs, errors
from api.routes import (
    compare,
    datasets,
    evaluate,
    events,
    export,
    health,
    job_validate,
    jobs,
    predict,
    results,
    specs,
    sweeps,
    uploads,
    usage,
    weights,
    zoo,
)
from config.settings import get_settings
from store import live


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(title="Trainyard", version="0.1.0", description="Training as a service.",
                  docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_request_bytes:
            return JSONResponse(
                status_code=413,
                content={"detail": [errors.field_error(
                    ["body"], f"request body exceeds {settings.max_request_bytes} bytes")]},
            )
        return await call_next(request)

    errors.install(app)
    live.install(settings.redis_url)
    # compare (/jobs/compare, /jobs/groups) before jobs, whose /jobs/{job_id} would take those paths
    for module in (health, uploads, datasets, usage, weights, compare, job_validate, jobs, results, evaluate, predict,
                   export, events, specs, sweeps, zoo):
        app.include_router(module.router, prefix="/v1")
    docs.install(app)  # /docs and /redoc from web/vendor: no CDN
    web_dir = resources.files("web")
    app.mount("/", StaticFiles(directory=str(web_dir), html=True), name="web")
    return app


app = create_app()
