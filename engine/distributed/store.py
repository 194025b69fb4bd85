"""Key-value stores for rendezvous (torch.distributed.TCPStore / HashStore).

A ``TCPStore`` is a tiny server run by one process (rank 0, on MASTER_PORT) plus a
client in every rank. Messages are length-prefixed frames of bytes fields, never
pickle, so a store port reachable by other machines executes nothing. Every
blocking call takes a timeout and raises ``RuntimeError`` instead of hanging.
"""
from __future__ import annotations

import datetime
import socket
import struct
import threading
import time
from typing import Any

__all__ = ["HashStore", "PrefixStore", "Store", "TCPStore"]

_SET, _GET, _ADD, _CHECK, _DELETE, _NUMKEYS = b"s", b"g", b"a", b"c", b"d", b"n"
_OK, _MISSING = b"k", b"m"


def _seconds(timeout: Any) -> float:
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    return float(timeout)


def _send(sock: socket.socket, *fields: bytes) -> None:
    parts = [struct.pack(">I", len(fields))]
    for f in fields:
        parts.append(struct.pack(">Q", len(f)))
        parts.append(f)
    sock.sendall(b"".join(parts))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("store connection closed")
        got += k
    return bytes(buf)


def _recv(sock: socket.socket) -> list[bytes]:
    (count,) = struct.unpack(">I", _recv_exact(sock, 4))
    out = []
    for _ in range(count):
        (n,) = struct.unpack(">Q", _recv_exact(sock, 8))
        out.append(_recv_exact(sock, n))
    return out


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


class Store:
    """The store interface: set/get/add/wait/check/delete_key/num_keys with a timeout."""

    timeout: float

    def set(self, key: str, value: Any) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def add(self, key: str, amount: int) -> int:
        raise NotImplementedError

    def check(self, keys: list[str]) -> bool:
        raise NotImplementedError

    def delete_key(self, key: str) -> bool:
        raise NotImplementedError

    def num_keys(self) -> int:
        raise NotImplementedError

    def wait(self, keys: list[str], timeout: Any = None) -> None:
        """Blocks until every key exists; RuntimeError after ``timeout`` (default: the store's)."""
        limit = self.timeout if timeout is None else _seconds(timeout)
        deadline = time.monotonic() + limit
        for k in keys:
            self._get(k, max(0.0, deadline - time.monotonic()))

    def set_timeout(self, timeout: Any) -> None:
        self.timeout = _seconds(timeout)

    def _get(self, key: str, timeout: float) -> bytes:
        raise NotImplementedError


class _Table:
    """The dictionary behind both stores, with a condition to wait on keys."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.cond = threading.Condition()

    def set(self, key: str, value: bytes) -> None:
        with self.cond:
            self.data[key] = value
            self.cond.notify_all()

    def get(self, key: str, timeout: float) -> bytes | None:
        with self.cond:
            self.cond.wait_for(lambda: key in self.data, timeout=timeout)
            return self.data.get(key)

    def add(self, key: str, amount: int) -> int:
        with self.cond:
            v = int(self.data.get(key, b"0")) + amount
            self.data[key] = str(v).encode()
            self.cond.notify_all()
            return v


class HashStore(Store):
    """An in-process store (torch.distributed.HashStore), for threads of one process."""

    def __init__(self, timeout: Any = 300.0) -> None:
        self._t = _Table()
        self.timeout = _seconds(timeout)

    def set(self, key: str, value: Any) -> None:
        self._t.set(key, _as_bytes(value))

    def _get(self, key: str, timeout: float) -> bytes:
        v = self._t.get(key, timeout)
        if v is None:
            raise RuntimeError(f"store: timed out after {timeout:.1f}s waiting for key {key!r}")
        return v

    def get(self, key: str) -> bytes:
        return self._get(key, self.timeout)

    def add(self, key: str, amount: int) -> int:
        return self._t.add(key, amount)

    def check(self, keys: list[str]) -> bool:
        with self._t.cond:
            return all(k in self._t.data for k in keys)

    def delete_key(self, key: str) -> bool:
        with self._t.cond:
            return self._t.data.pop(key, None) is not None

    def num_keys(self) -> int:
        with self._t.cond:
            return len(self._t.data)


class _Server:
    """The TCPStore server: one thread accepting, one per client connection."""

    def __init__(self, host: str, port: int) -> None:
        self.table = _Table()
        self.sock = socket.create_server((host, port), reuse_port=False, backlog=128)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, name="tcpstore-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), name="tcpstore-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        t = self.table
        try:
            while True:
                op, *args = _recv(conn)
                if op == _SET:
                    t.set(args[0].decode(), args[1])
                    _send(conn, _OK)
                elif op == _GET:
                    v = t.get(args[0].decode(), float(args[1]))
                    _send(conn, _MISSING) if v is None else _send(conn, _OK, v)
                elif op == _ADD:
                    _send(conn, _OK, str(t.add(args[0].decode(), int(args[1]))).encode())
                elif op == _CHECK:
                    with t.cond:
                        ok = all(k.decode() in t.data for k in args)
                    _send(conn, _OK if ok else _MISSING)
                elif op == _DELETE:
                    with t.cond:
                        ok = t.data.pop(args[0].decode(), None) is not None
                    _send(conn, _OK if ok else _MISSING)
                elif op == _NUMKEYS:
                    with t.cond:
                        n = len(t.data)
                    _send(conn, _OK, str(n).encode())
                else:
                    return
        except (OSError, ConnectionError, IndexError, ValueError, struct.error):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.closed = True
        for s in [self.sock, *self.conns]:
            try:
                s.close()
            except OSError:
                pass


class TCPStore(Store):
    """torch.distributed.TCPStore: ``is_master`` hosts the server on ``port`` (0 picks one).

    Clients retry connecting until ``timeout``; ``port`` tells the chosen port.
    """

    def __init__(self, host_name: str, port: int, world_size: int | None = None, is_master: bool = False,
                 timeout: Any = datetime.timedelta(seconds=300), wait_for_workers: bool = True) -> None:
        self.timeout = _seconds(timeout)
        self.host = host_name
        self._server = _Server("" if host_name in ("0.0.0.0", "") else host_name, port) if is_master else None
        self.port = self._server.port if self._server else port
        self._lock = threading.Lock()
        self._sock = self._connect()
        if world_size is not None and wait_for_workers:
            n = self.add("__store_joined", 1)
            if is_master and n < world_size:
                self._wait_count("__store_joined", world_size)

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.timeout
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        while True:
            try:
                s = socket.create_connection((host, self.port), timeout=min(5.0, self.timeout))
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
                return s
            except OSError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"TCPStore: could not connect to {host}:{self.port} "
                                       f"within {self.timeout:.1f}s: {e}") from e
                time.sleep(0.05)

    def _wait_count(self, key: str, n: int) -> None:
        deadline = time.monotonic() + self.timeout
        while int(self._get(key, self.timeout)) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"TCPStore: timed out after {self.timeout:.1f}s waiting for {n} workers")
            time.sleep(0.01)

    def _call(self, timeout: float, *fields: bytes) -> list[bytes]:
        with self._lock:
            self._sock.settimeout(timeout + 5.0)
            try:
                _send(self._sock, *fields)
                return _recv(self._sock)
            except TimeoutError as e:
                raise RuntimeError(f"TCPStore: no answer from {self.host}:{self.port} "
                                   f"within {timeout + 5.0:.1f}s") from e
            except (OSError, ConnectionError) as e:
                raise RuntimeError(f"TCPStore: connection to {self.host}:{self.port} lost: {e}") from e

    def set(self, key: str, value: Any) -> None:
        self._call(self.timeout, _SET, key.encode(), _as_bytes(value))

    def _get(self, key: str, timeout: float) -> bytes:
        r = self._call(timeout, _GET, key.encode(), repr(timeout).encode())
        if r[0] != _OK:
            raise RuntimeError(f"TCPStore: timed out after {timeout:.1f}s waiting for key {key!r}")
        return r[1]

    def get(self, key: str) -> bytes:
        return self._get(key, self.timeout)

    def add(self, key: str, amount: int) -> int:
        return int(self._call(self.timeout, _ADD, key.encode(), str(int(amount)).encode())[1])

    def check(self, keys: list[str]) -> bool:
        return self._call(self.timeout, _CHECK, *(k.encode() for k in keys))[0] == _OK

    def delete_key(self, key: str) -> bool:
        return self._call(self.timeout, _DELETE, key.encode())[0] == _OK

    def num_keys(self) -> int:
        return int(self._call(self.timeout, _NUMKEYS)[1])

    def close(self) -> None:
        """Closes the client connection and, in the master, the server."""
        try:
            self._sock.close()
        except OSError:
            pass
        if self._server is not None:
            self._server.close()
            self._server = None


class PrefixStore(Store):
    """Prepends ``prefix/`` to every key of ``store`` (torch.distributed.PrefixStore)."""

    def __init__(self, prefix: str, store: Store) -> None:
        self.prefix, self.store = prefix, store
        self.timeout = store.timeout

    def _k(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def set(self, key: str, value: Any) -> None:
        self.store.set(self._k(key), value)

    def _get(self, key: str, timeout: float) -> bytes:
        return self.store._get(self._k(key), timeout)

    def get(self, key: str) -> bytes:
        return self.store._get(self._k(key), self.timeout)

    def add(self, key: str, amount: int) -> int:
        return self.store.add(self._k(key), amount)

    def check(self, keys: list[str]) -> bool:
        return self.store.check([self._k(k) for k in keys])

    def delete_key(self, key: str) -> bool:
        return self.store.delete_key(self._k(key))

    def num_keys(self) -> int:
        return self.store.num_keys()
