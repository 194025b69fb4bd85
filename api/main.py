"""The FastAPI application: assembles routers, error handlers and the dashboard."""
from __future__ import annotations

from importlib import resources

from fastapi import Depends, FastAPI

from api import docs, errors
from api.bodylimit import BodyLimitMiddleware
from api.nulbytes import Dashboard, NulByteMiddleware, reject_nul_in_body
from api.ratelimit import rate_limit
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
    workers,
    zoo,
)
from config.settings import get_settings
from store import live


def create_app() -> FastAPI:
    settings = get_settings()
    # every route: the owner's request rate, then no NUL in a path parameter or body (query: middleware)
    app = FastAPI(title="Trainyard", version="0.1.0", description="Training as a service.",
                  docs_url=None, redoc_url=None,
                  dependencies=[Depends(rate_limit), Depends(reject_nul_in_body)])
    errors.install(app, retry_after_s=settings.db_retry_after_s)
    live.install(settings.redis_url)
    # compare (/jobs/compare, /jobs/groups) before jobs, whose /jobs/{job_id} would take those paths
    for module in (health, uploads, datasets, usage, weights, compare, job_validate, jobs, results, evaluate, predict,
                   export, events, specs, sweeps, workers, zoo):
        app.include_router(module.router, prefix="/v1")
    docs.install(app)  # /docs and /redoc from web/vendor: no CDN
    web_dir = resources.files("web")
    app.add_middleware(NulByteMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)  # outermost
    app.mount("/", Dashboard(directory=str(web_dir), html=True), name="web")
    return app


app = create_app()
