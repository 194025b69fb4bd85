"""A TCP proxy the tests control, to put a network fault between a client and a server.

``open``: bytes flow. ``blackhole``: nothing flows either way and new connections are accepted
but never reach the server; the kernel still acknowledges what the client sends, so the
client sees no error at all, only silence (a partition, or a server that stopped answering).
When the hole closes, what was held flows on. ``cut``: every connection is reset and new
ones are closed at once (the server went away)."""
from __future__ import annotations

import contextlib
import socket
import struct
import threading


class Proxy:
    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.host, self.port = host, self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._mode = "open"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def mode(self) -> str:
        return self._mode

    def open(self) -> None:
        self._mode = "open"
        self._flowing.set()

    def blackhole(self) -> None:
        self._mode = "blackhole"
        self._flowing.clear()

    def cut(self) -> None:
        """Reset every connection now; refuse new ones until ``open``."""
        self._mode = "cut"
        self._flowing.set()  # held threads wake up and find their sockets closed
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            _reset(s)

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self._mode == "cut":
            _reset(client)
            return
        self._track(client)
        self._flowing.wait()
        if self._mode == "cut" or self._closed:
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.settimeout(None)
        except OSError:
            _reset(client)
            return
        self._track(upstream)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._sockets.add(s)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                self._flowing.wait()
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # received just before the hole opened: held too
                if self._mode == "cut":
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _reset(s: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), after waking a thread blocked reading it."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        s.close()
