"""Requests per minute per owner (``rate_limit_per_minute``; 0: off): a moving window counted
in Redis with the ``limits`` library, so every API process shares one count. Past it a 429
with Retry-After (the seconds until the window's oldest request leaves it). Requests without a
valid key count against their client address; /v1/health is not counted. A Redis outage lets
requests through (the limit protects the service; it must not take it down)."""
from __future__ import annotations

import logging
import math
import time
from functools import lru_cache

from fastapi import HTTPException, Request, status
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from api.auth import owner_of
from api.deps import SettingsDep

log = logging.getLogger(__name__)
NAMESPACE = "trainyard-requests"
EXEMPT = ("/v1/health",)


@lru_cache
def _limiter(redis_url: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(redis_url, socket_timeout=1, socket_connect_timeout=1))


def rate_limit(request: Request, settings: SettingsDep) -> None:
    """A dependency of every route: count the request against its owner's minute."""
    per_minute = settings.rate_limit_per_minute
    if per_minute <= 0 or not settings.redis_url or request.url.path in EXEMPT:
        return
    owner = owner_of(request, settings)
    who = f"owner:{owner}" if owner is not None else f"address:{request.client.host if request.client else '-'}"
    item = RateLimitItemPerMinute(per_minute)
    limiter = _limiter(settings.redis_url)
    try:
        if limiter.hit(item, NAMESPACE, who):
            return
        reset = limiter.get_window_stats(item, NAMESPACE, who).reset_time
    except Exception as exc:  # noqa: BLE001 - Redis away: let the request through
        log.warning("rate limit not checked (%s: %s)", exc.__class__.__name__, exc)
        return
    retry = max(1, math.ceil(reset - time.time()))
    raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                        f"over {per_minute} requests per minute (rate_limit_per_minute) for this "
                        f"{'owner' if owner is not None else 'client'}; retry in {retry} s",
                        headers={"Retry-After": str(retry)})
