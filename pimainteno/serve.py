"""The listening socket the dashboard and the fleet view serve on (bound before Datasette starts)."""

from __future__ import annotations

import ipaddress
import socket

from pimainteno.errors import ToolError


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening, inheritable socket on ``host``:``port``; a one-line error when it cannot be had."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name: resolved by bind
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ToolError(f"cannot listen on {host}:{port}: {e.strerror or e}; pass another --port or --host") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
