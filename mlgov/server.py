"""uvicorn protocol that always turns on TCP_NODELAY.

asyncio only sets TCP_NODELAY when the socket's ``proto`` is IPPROTO_TCP; with ``--workers N`` uvicorn
hands each worker a socket rebuilt from a file descriptor whose ``proto`` reads 0, so Nagle's algorithm
stays on and every keep-alive response waits ~40 ms for the peer's delayed ACK (uvicorn issue #3149).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock: Any = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
