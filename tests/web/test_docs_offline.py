"""/docs and /redoc with no internet: every request to a host other than the service's is
aborted (as on an air-gapped machine) and the pages still list the API's operations, from the
Swagger UI and ReDoc assets the service serves itself (web/vendor)."""
from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from tests.web.shots import shoot

pytestmark = pytest.mark.web


def expect(*args, **kwargs):
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def _offline(page, base_url: str) -> list[tuple[str, str]]:
    """Abort every request that leaves the service; what was aborted, as (resource type, url)."""
    host = urlsplit(base_url).hostname
    aborted: list[tuple[str, str]] = []

    def handle(route):
        url = route.request.url
        if urlsplit(url).hostname in (host, "localhost", "127.0.0.1") or url.startswith(("data:", "blob:")):
            return route.continue_()
        aborted.append((route.request.resource_type, url))
        return route.abort()

    page.route("**/*", handle)
    return aborted


def _operations(base_url: str) -> list[tuple[str, str]]:
    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]


def test_swagger_ui_lists_the_operations_offline(stack, page):
    aborted = _offline(page, stack.base_url)
    ops = _operations(stack.base_url)
    assert ("GET", "/v1/jobs") in ops and ("POST", "/v1/jobs") in ops
    page.goto(f"{stack.base_url}/docs", timeout=90_000)  # 2 MB of Swagger UI on a busy machine
    blocks = page.locator(".opblock")
    expect(blocks.first).to_be_visible(timeout=20_000)
    expect(blocks).to_have_count(len(ops))
    jobs = page.locator('.opblock-get .opblock-summary-path[data-path="/v1/jobs"]')
    expect(jobs).to_have_count(1)
    page.mouse.move(0, 0)
    shoot(page, "docs")
    html = page.content()
    assert "cdn.jsdelivr.net" not in html and "fastapi.tiangolo.com" not in html
    assert aborted == [], f"the docs page asked the internet for {aborted}"
    assert page.js_errors == []


def test_redoc_lists_the_operations_offline(stack, page):
    aborted = _offline(page, stack.base_url)
    page.goto(f"{stack.base_url}/redoc", timeout=90_000)
    # ReDoc's menu has an entry per operation; the job list's summary is among them
    menu = page.locator('[role="menuitem"], li[data-item-id^="tag/"] label')
    expect(page.get_by_text("List Jobs").first).to_be_attached(timeout=20_000)
    assert menu.count() >= 10
    # ReDoc's bundle links the Redocly logo in its menu footer from its CDN and hides the image
    # when it does not load; nothing else (scripts, styles, fonts, the spec) may leave the host
    assert [a for a in aborted if a[0] != "image"] == [], f"the ReDoc page needed the internet for {aborted}"
    assert {url for _, url in aborted} <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, aborted
    expect(page.locator('img[alt="redocly logo"]')).to_have_count(0)
