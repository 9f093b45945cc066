"""Echoes its event; with `ports` (a list) it first binds and listens on those TCP ports of
127.0.0.1, holding them for the life of the environment, as a function running its own server
on a common port (8080, 4243, 9009) does."""

import socket

_held: dict[int, socket.socket] = {}


def handler(event, context):
    event = event or {}
    for port in event.get("ports", []):
        if port not in _held:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", port))
            sock.listen(8)
            _held[port] = sock
    return {"echo": event, "listening": sorted(_held)}
