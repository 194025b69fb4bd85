"""Engines and sessions: one engine per URL. SQLite (the embedded default) runs in WAL mode
with a busy timeout and immediate write transactions, so several processes share it safely.

Nothing waits on the database without a bound (settings ``db_*``): PostgreSQL connections are
made within ``db_connect_timeout_s``, checked before each use within ``db_ping_timeout_s``
(a connection that does not answer is dropped and a new one made), run statements under the
server's ``statement_timeout`` and wait for any answer at most that plus ``DEADLINE_MARGIN_S``
(a black-holed connection gets no answer and no error from the network). A checkout waits
``db_pool_timeout_s`` for a free connection. So a dead, hung or unreachable database is an
error within seconds (the API answers 503), never a request that hangs."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings, get_settings

DEADLINE_MARGIN_S = 10.0
_WAIT_TIMEOUT = getattr(psycopg.errors, "_WaitTimeout", psycopg.errors.OperationalError)


class BoundedConnection(psycopg.Connection):
    """A psycopg connection that waits for the server at most ``deadline_s`` per operation;
    past it the connection is closed (its protocol state is unknown) and the operation
    raises ``psycopg.OperationalError``, which SQLAlchemy takes for a disconnect."""

    deadline_s: float | None = None
    timeouts_lifted: bool = False  # by without_timeouts; put back at the next checkout

    def wait(self, gen, interval: float = 0.1, timeout: float | None = None):  # psycopg's own signature
        imposed = timeout is None and self.deadline_s is not None
        try:
            return super().wait(gen, interval, self.deadline_s if imposed else timeout)
        except _WAIT_TIMEOUT as exc:
            if not imposed:
                raise
            self.close()
            raise psycopg.OperationalError(f"the database did not answer within {self.deadline_s:g} s") from exc


def _sqlite_pragmas(dbapi_conn, busy_timeout_s: float) -> None:
    # SQLAlchemy emits BEGIN itself (see _sqlite_begin); the driver must not.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    if cur.execute("PRAGMA page_count").fetchone()[0] == 0:  # a new file: see store.storage
        cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn) -> None:
    # Take the write lock up front: a deferred transaction that reads and then writes can
    # fail with SQLITE_BUSY at once (no busy_timeout wait) when another process wrote between.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _pool_args(settings: Settings) -> dict:
    return {"pool_timeout": settings.db_pool_timeout_s, "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow}


def _postgres_engine(url: str, settings: Settings) -> Engine:
    parsed = make_url(url)
    options = parsed.query.get("options", "")
    options = " ".join(options) if isinstance(options, tuple) else options
    statement_ms = int(settings.db_statement_timeout_s * 1000)
    connect_args = {
        "connect_timeout": max(2, round(settings.db_connect_timeout_s)),  # libpq's minimum is 2
        "options": f"{options} -c statement_timeout={statement_ms}".strip(),
        # a real network that drops packets: the kernel gives up on unacknowledged data and
        # probes idle connections
        "tcp_user_timeout": int((settings.db_connect_timeout_s + settings.db_ping_timeout_s) * 1000),
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 5, "keepalives_count": 3,
    }
    deadline = settings.db_statement_timeout_s + DEADLINE_MARGIN_S if statement_ms > 0 else None
    engine = create_engine(url, connect_args=connect_args, **_pool_args(settings))

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):
        conn = BoundedConnection.connect(*cargs, **cparams)
        conn.deadline_s = deadline
        return conn

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn, _record, _proxy):
        # pool_pre_ping with a bound: a connection that does not answer in time is replaced
        dbapi_conn.deadline_s = settings.db_ping_timeout_s
        try:
            engine.dialect.do_ping(dbapi_conn)
            if dbapi_conn.timeouts_lifted:
                with dbapi_conn.transaction():
                    dbapi_conn.execute(f"SET statement_timeout = {statement_ms}")
                dbapi_conn.timeouts_lifted = False
        except psycopg.Error as exc:
            raise DisconnectionError(f"the pooled connection did not answer: {exc}") from exc
        finally:
            dbapi_conn.deadline_s = deadline

    return engine


@lru_cache
def get_engine(url: str) -> Engine:
    """The process-wide engine for ``url``, with the timeouts of the process's settings."""
    return make_engine(url, get_settings())


def make_engine(url: str, settings: Settings) -> Engine:
    """A new engine: SQLite files get WAL mode and a busy timeout, PostgreSQL the timeouts above."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        on_file = bool(parsed.database) and parsed.database != ":memory:"
        if on_file:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        pool = _pool_args(settings) if on_file else {}  # an in-memory database is one connection
        engine = create_engine(url, connect_args={"check_same_thread": False}, **pool)
        event.listen(engine, "connect", lambda conn, _record: _sqlite_pragmas(conn, settings.db_busy_timeout_s))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_driver_name() == "psycopg":
        return _postgres_engine(url, settings)
    return create_engine(url, pool_pre_ping=True)


def without_timeouts(connection) -> None:
    """Lift the statement timeout and the answer deadline from one checked-out connection
    (migrations: an index build on a large table may rightly take longer)."""
    dbapi_conn = connection.connection.dbapi_connection
    if isinstance(dbapi_conn, BoundedConnection):
        dbapi_conn.execute("SET statement_timeout = 0")
        dbapi_conn.deadline_s, dbapi_conn.timeouts_lifted = None, True


@lru_cache
def get_sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
