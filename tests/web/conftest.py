"""Browser fixtures for the dashboard tests: the system Chromium driven by Playwright.

Playwright's own browser downloads are never used: the tests launch the Chromium at
``TRAINYARD_CHROMIUM`` (default: /usr/bin/chromium, else ``chromium`` on PATH). Without it the tests skip with a
message saying how to get it, except under CI (CI=true), where a missing browser fails.
"""
from __future__ import annotations

import mimetypes
import os
import shutil
from pathlib import Path

import httpx
import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("TRAINYARD_CHROMIUM") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium") or "/usr/bin/chromium"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WEB_DIR = Path(__file__).resolve().parents[2] / "web"


def _unavailable(message: str):
    if IN_CI:
        pytest.fail(f"{message} (CI requires it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(
            f"Chromium not found at {CHROMIUM}: install it (apt-get install -y chromium) "
            "or point TRAINYARD_CHROMIUM at a Chromium binary"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"the playwright package is not installed ({exc}); pip install -e '.[test]'")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request, tmp_path):
    """A fresh browser context and page. ``page.js_errors`` collects uncaught page errors
    and console errors; a failing test leaves a screenshot next to its tmp_path."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.js_errors = errors
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        shot = tmp_path / "failure.png"
        try:
            pg.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failing page: {shot}")
        except Exception as exc:  # noqa: BLE001 - best effort only
            print(f"could not take a failure screenshot: {exc}")
    context.close()


class FakeApi:
    """Serves web/ and canned /v1 JSON to a page through Playwright request interception —
    no server process. For states the real service cannot be put in on demand (no jobs,
    a failed job, an unknown id). ``origin`` is a made-up host that never hits the network.

    ``/v1/jobs/{id}/events``: a job with canned ``events`` ([(kind, data)], the n-th has id
    n; an ("end", data) entry repeats the id before it) gets them, from after ``?after=``,
    as one text/event-stream body; the browser reconnects after ``retry`` ms when the body
    ends, and the page must drop what it has already seen (interception shows no
    Last-Event-ID, so every reconnect replays from the URL's position). A job without canned
    events gets a stream that closes at once without an event, as a proxy that cuts streams
    would: the page falls back to polling. ``urls`` records every request with its query."""

    origin = "http://trainyard.test"
    retry_ms = 300

    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.metrics: dict[str, dict] = {}
        self.checkpoints: dict[str, list] = {}
        self.logs: dict[str, list] = {}
        self.events: dict[str, list] = {}
        self.requests: list[str] = []
        self.urls: list[str] = []

    def install(self, page) -> None:
        page.route(f"{self.origin}/**", self._handle)

    def _handle(self, route):
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(route.request.url)
        path = url.path
        self.requests.append(path)
        self.urls.append(f"{path}?{url.query}" if url.query else path)
        if path.startswith("/v1/"):
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            parts = path[len("/v1/"):].strip("/").split("/")
            if len(parts) == 3 and parts[0] == "jobs" and parts[2] == "events" and parts[1] in self.jobs:
                return route.fulfill(status=200, body=self._stream(parts[1], int(query.get("after", 0))),
                                     headers={"content-type": "text/event-stream", "cache-control": "no-store"})
            status, body = self._api(parts, query)
            return route.fulfill(status=status, json=body)
        rel = "index.html" if path in ("", "/") else path.lstrip("/")
        file = (WEB_DIR / rel).resolve()
        if WEB_DIR not in file.parents or not file.is_file():
            return route.fulfill(status=404, body="not found")
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            ctype = "text/javascript"
        return route.fulfill(status=200, body=file.read_bytes(), headers={"content-type": ctype})

    def _stream(self, job_id: str, after: int) -> str:
        import json

        out = [f"retry: {self.retry_ms}\n\n"]
        seq = 0
        for kind, data in self.events.get(job_id, []):
            if kind != "end":
                seq += 1
            if seq > after or (kind == "end" and seq >= after):
                out.append(f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n")
        return "".join(out)

    def _api(self, parts: list[str], query: dict[str, str]):
        if parts == ["jobs"]:
            items = sorted(self.jobs.values(), key=lambda j: j["created_at"], reverse=True)
            return 200, {"items": items, "next_cursor": None}
        if parts in (["datasets"], ["sweeps"]):  # the runs table's filter menus
            return 200, {"items": []}
        if len(parts) >= 2 and parts[0] == "jobs":
            job_id = parts[1]
            if job_id not in self.jobs:
                return 404, {"detail": f"job {job_id} not found"}
            if len(parts) == 2:
                return 200, self.jobs[job_id]
            if parts[2:] == ["metrics"]:
                return 200, self._metrics(job_id, int(query.get("after_step", 0)))
            if parts[2:] == ["checkpoints"]:
                return 200, {"items": self.checkpoints.get(job_id, [])}
            if parts[2:] == ["logs"]:
                after = int(query.get("after", 0))
                lines = [line for line in self.logs.get(job_id, []) if line["seq"] > after]
                return 200, {"job_id": job_id, "lines": lines, "last_seq": lines[-1]["seq"] if lines else after,
                             "truncated": False}
        return 404, {"detail": "Not Found"}

    def _metrics(self, job_id: str, after_step: int) -> dict:
        """The canned answer; one with ``series`` honours ``after_step`` as the service does."""
        answer = self.metrics.get(job_id, {"job_id": job_id, "steps": [], "epochs": []})
        if "series" not in answer or not after_step:
            return answer
        series = {}
        for name, s in answer["series"].items():
            keep = [i for i, step in enumerate(s["step"]) if step > after_step]
            series[name] = {"kind": s["kind"], **{k: [s[k][i] for i in keep] for k in ("step", "epoch", "value")}}
        return {**answer, "series": series}


@pytest.fixture
def fake_api(page):
    api = FakeApi()
    api.install(page)
    return api


@pytest.fixture(scope="module")
def api(stack):
    """An HTTP client on the real stack's API, for the tests that set up what the page shows."""
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        yield client
