"""Nothing waits on PostgreSQL without a bound: a statement past statement_timeout, a pooled
connection that went silent (black-holed through tests/e2e/proxy.py) and a server that cannot
be reached are errors within the configured timeouts, and the engine recovers by itself."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from config.settings import Settings
from store.db import DEADLINE_MARGIN_S, BoundedConnection, make_engine, without_timeouts
from tests.e2e.proxy import Proxy


def _through(proxy: Proxy, url: str) -> str:
    return make_url(url).set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)


@pytest.fixture
def proxy(postgres_url):
    parsed = make_url(postgres_url)
    p = Proxy(parsed.host, parsed.port or 5432)
    yield p
    p.close()


def test_statement_timeout_cancels_a_long_statement(postgres_url):
    engine = make_engine(postgres_url, Settings(db_statement_timeout_s=0.5))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "500ms"
            # the test schema's search_path survives beside the timeout in the options
            assert conn.execute(text("SHOW search_path")).scalar().startswith("ty_")
            with pytest.raises(OperationalError, match="statement timeout"):
                conn.execute(text("SELECT pg_sleep(5)"))
    finally:
        engine.dispose()


def test_silent_pooled_connection_is_replaced_then_refused_within_the_timeouts(postgres_url, proxy):
    engine = make_engine(_through(proxy, postgres_url), Settings(db_ping_timeout_s=1, db_connect_timeout_s=2))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
            assert isinstance(conn.connection.dbapi_connection, BoundedConnection)
        proxy.blackhole()
        # the ping of the pooled connection gets no answer; the new connection is never set up
        with pytest.raises(OperationalError, match="timeout|did not answer"):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        proxy.open()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 2")).scalar() == 2
    finally:
        engine.dispose()


def test_statement_in_flight_when_the_network_goes_silent_gets_an_error(postgres_url, proxy):
    # a 3 s statement timeout gives an answer deadline of 3 + DEADLINE_MARGIN_S seconds
    engine = make_engine(_through(proxy, postgres_url), Settings(db_statement_timeout_s=3))
    outcome: list[BaseException | int] = []
    started = threading.Event()

    def run() -> None:
        try:
            with engine.connect() as conn:
                started.set()
                outcome.append(conn.execute(text("SELECT 1 FROM pg_sleep(1.5)")).scalar())
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    try:
        worker = threading.Thread(target=run)
        worker.start()
        assert started.wait(10)
        time.sleep(0.5)  # the statement is on the server; its answer will be held
        proxy.blackhole()
        worker.join(60)
        assert not worker.is_alive(), "the statement still waits on a silent connection"
        assert isinstance(outcome[0], OperationalError), outcome
        assert "did not answer within 13 s" in str(outcome[0])
        proxy.open()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 3")).scalar() == 3
    finally:
        proxy.open()
        engine.dispose()


def test_cut_connection_is_an_error_at_once_and_recovers(postgres_url, proxy):
    engine = make_engine(_through(proxy, postgres_url), Settings())
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        proxy.cut()
        with pytest.raises(OperationalError):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        proxy.open()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 4")).scalar() == 4
    finally:
        engine.dispose()


def test_lifted_timeouts_come_back_at_the_next_checkout(postgres_url):
    engine = make_engine(postgres_url, Settings(db_statement_timeout_s=0.5))
    try:
        with engine.connect() as conn:
            without_timeouts(conn)
            conn.commit()
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
            conn.execute(text("SELECT pg_sleep(0.7)"))  # a migration's long statement runs
            conn.commit()
        with engine.connect() as conn:  # the same pooled connection, its timeouts put back
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "500ms"
            assert conn.connection.dbapi_connection.deadline_s == 0.5 + DEADLINE_MARGIN_S
    finally:
        engine.dispose()
