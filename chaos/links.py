"""The network between the hub and a member's database server, as a TCP relay the harness
controls: the hub's config names the relay's port, the member's own desks connect to the
server directly (a partition cuts the hub off; the library goes on working).

Modes, switched while connections are open:

- `up`: bytes pass;
- `slow`: each chunk waits `delay` seconds before it is passed on, both ways (a slow link);
- `partition`: nothing passes either way and nothing is refused: open connections hang in the
  middle of a query, new ones hang in their handshake, as behind a firewall that drops packets;
- `refuse`: open connections are reset and new ones closed at once (the server's host down).

A relay rather than network namespaces (which `make cluster` uses for worker hosts): the hub
runs as one process per run here, and what it meets is the same (a hang, a reset, a refusal,
latency), switched per member without moving any process.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

MODES = ("up", "slow", "partition", "refuse")
CHUNK = 65536


class Link:
    def __init__(self, target_port: int, delay: float = 0.2):
        self.target_port = target_port
        self.delay = delay
        self.mode = "up"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"link-{self.port}").start()

    def set(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"link mode {mode!r}: one of {', '.join(MODES)}")
        self.mode = mode
        if mode == "refuse":
            self._reset_all()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._reset_all()

    def _reset_all(self) -> None:
        with self._lock:
            sockets, self._open = list(self._open), set()
        for s in sockets:
            with contextlib.suppress(OSError):
                # linger 0: a reset at the close, as from a host that went away; the shutdown
                # first wakes the relay's own thread blocked reading it
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._wait_while("partition")
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            server.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open |= {client, server}
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                self._wait_while("partition")
                if self.mode == "slow":
                    time.sleep(self.delay)
                if self.mode == "refuse":
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _wait_while(self, mode: str) -> None:
        while self.mode == mode and not self._closed:
            time.sleep(0.05)
