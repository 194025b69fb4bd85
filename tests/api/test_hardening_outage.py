"""With the database unreachable, every operation of the API answers 503 with Retry-After
where it needs the database (and a 4xx where the request is refused before), never a 500
(tests/e2e/test_db_outage.py does the same against a running process through a proxy)."""
from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import get_settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


@pytest.fixture
def no_database(settings):
    down = settings.model_copy(update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/x"})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: down
    with TestClient(app, raise_server_exceptions=False) as c:
        yield app, c


def test_every_operation_answers_503_or_a_4xx_without_its_database(no_database):
    app, client = no_database
    answered: dict[str, int] = {}
    for path, item in app.openapi()["paths"].items():
        for method in item:
            url = path
            for p in item[method].get("parameters", []):
                url = url.replace("{" + p["name"] + "}", "0" * 32)
            r = client.request(method.upper(), url, json={} if method in ("post", "put", "patch") else None)
            answered[f"{method.upper()} {path}"] = r.status_code
            assert r.status_code < 500 or r.status_code == 503, (method, path, r.status_code, r.text[:300])
            if r.status_code == 503 and not path.endswith("/health"):
                assert int(r.headers["retry-after"]) > 0 and "database is unavailable" in r.text
    # the routes that need no database (the zoo) or refuse the request first (compare without ids) aside
    unavailable = [k for k, status in answered.items() if status == 503]
    print(f"\n{len(unavailable)} of {len(answered)} operations answered 503; the others: "
          f"{ {k: v for k, v in answered.items() if v != 503} }")
    assert len(unavailable) >= 30, answered
