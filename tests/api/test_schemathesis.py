"""Every operation of the real app, on PostgreSQL, with schemathesis: bounded examples of
valid and invalid requests (NUL characters included), plus the stateful phase over the links
it infers (a created dataset's id into the routes that take one), and not one server error.

Kept small (a few examples per operation, one pass) so the run stays under about a minute; a
failure prints the request that reproduces it."""
from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import create_engine, text

from api.main import create_app
from config.settings import Settings, get_settings
from migrations import upgrade
from store.db import get_engine

MAX_EXAMPLES = 3
CALL_TIMEOUT_S = 120  # a slow answer on a loaded machine is not a failure here; a server error is
SERVICE: dict[str, Settings] = {}  # the settings the app answers with, set by the fixture below

app = create_app()
app.dependency_overrides[get_settings] = lambda: SERVICE["settings"]
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES,
                                allow_x00=True)
# the live event stream answers for as long as its job lives: not a request/response route
schema = schema.exclude(path_regex=r"/events$")


@pytest.fixture(scope="module", autouse=True)
def service(postgres_url, embedded_redis_url):
    """A migrated PostgreSQL schema of its own and Redis behind the app."""
    schema_name = f"ty_{uuid.uuid4().hex[:12]}"
    base = postgres_url.rsplit("options=", 1)[0]
    admin = create_engine(base.rstrip("?&"))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    url = f"{base}options=-csearch_path%3D{schema_name}"
    upgrade(url)
    SERVICE["settings"] = Settings(database_url=url, redis_url=embedded_redis_url, queue=f"t-{uuid.uuid4().hex[:8]}")
    yield
    get_engine(url).dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
    admin.dispose()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_server_error(case):
    case.call_and_validate(checks=[not_a_server_error], timeout=CALL_TIMEOUT_S)


def _operations() -> list[tuple[str, str, dict]]:
    spec = app.openapi()
    return [(path, method.upper(), op) for path, item in spec["paths"].items() for method, op in item.items()
            if method in ("get", "post", "put", "patch", "delete") and not path.endswith("/events")]


def _body_fields(op: dict) -> tuple[str | None, list[str]]:
    content = op.get("requestBody", {}).get("content", {})
    spec = app.openapi()
    for kind in ("application/json", "multipart/form-data"):
        if kind in content:
            schema = content[kind]["schema"]
            while "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            return kind, sorted(schema.get("properties", {}))
    return None, []


def test_a_nul_in_any_parameter_or_body_field_of_any_operation_is_a_422_naming_it():
    """Deterministically, what the fuzzing above reaches only by chance: every path and query
    parameter and every top-level body field of every operation, one at a time, with a NUL."""
    from fastapi.testclient import TestClient

    tried = 0
    with TestClient(app, raise_server_exceptions=False) as client:
        for path, method, op in _operations():
            params = op.get("parameters", [])
            filled = path
            for p in params:
                if p["in"] == "path":
                    filled = filled.replace("{" + p["name"] + "}", "0" * 32)
            targets = [("path", p["name"]) for p in params if p["in"] == "path"]
            targets += [("query", p["name"]) for p in params if p["in"] == "query"]
            kind, fields = _body_fields(op)
            targets += [("body", f) for f in fields]
            for where, name in targets:
                url, query = filled, {}
                if where == "path":
                    url = path.replace("{" + name + "}", "a%00b")
                    for p in params:
                        url = url.replace("{" + p["name"] + "}", "0" * 32)
                elif where == "query":
                    query = {name: "a\x00b"}
                r = (client.request(method, url, params=query, json={name: "a\x00b"}) if kind == "application/json"
                     and where == "body" else
                     client.request(method, url, params=query, data={name: "a\x00b"}, files={"_": ("x", b"")})
                     if where == "body" else client.request(method, url, params=query))
                tried += 1
                assert r.status_code == 422, (method, path, where, name, r.status_code, r.text[:300])
                assert [where, name] in [e["loc"][:2] for e in r.json()["detail"]], (method, path, where, name, r.text)
    print(f"\n{tried} NUL requests")
    assert tried > 60


class ServerErrorFreeWorkflow(schema.as_state_machine()):
    """Sequences of calls over the links schemathesis infers (a created dataset's or job's id
    into the operations that take one), checked for server errors only."""

    def get_call_kwargs(self, case) -> dict:
        return {"timeout": CALL_TIMEOUT_S}

    def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
        case.validate_response(response, checks=[not_a_server_error], transport_kwargs=kwargs or None)


def test_stateful_sequences_answer_no_server_error():
    ServerErrorFreeWorkflow.run(settings=settings(
        max_examples=MAX_EXAMPLES, stateful_step_count=5, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck)))
