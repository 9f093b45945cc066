"""Entry script that times the monitor: the layer's own bootstrap, watched from inside.

The benchmark renames the layer's `bootstrap.py` to `bootstrap_monitor.py` and puts this in its
place. It wraps `socket.socket.sendall`, through which every HTTP request of the monitor goes
out, to write on stderr the times of its registration and of its first call to /event/next, and
the body of its Telemetry API subscription; then it runs the real bootstrap unchanged in this
interpreter. It imports nothing the monitor does not import itself.
"""

import os
import socket
import sys
import time

_sendall = socket.socket.sendall
_seen: set[str] = set()
_body_follows = [False]


def _note(key: str, text: str) -> None:
    if key not in _seen:
        _seen.add(key)
        print(f"BENCH {key} {text}", file=sys.stderr, flush=True)


def sendall(self, data, *args):
    line = bytes(data[:200]).split(b"\r\n", 1)[0]
    if b"/extension/event/next" in line:
        _note("next", f"{time.time():.6f}")
    elif b"/extension/register" in line:
        _note("register", f"{time.time():.6f}")
    elif line.startswith(b"PUT ") and b"/telemetry" in line:
        body = bytes(data).partition(b"\r\n\r\n")[2]
        if body:
            _note("subscribe", " ".join(body.decode().split()))
        else:
            _body_follows[0] = True
    elif _body_follows[0]:
        _body_follows[0] = False
        _note("subscribe", " ".join(bytes(data).decode().split()))
    return _sendall(self, data, *args)


socket.socket.sendall = sendall

_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap_monitor.py")
with open(_path, encoding="utf-8") as _source:
    _code = compile(_source.read(), _path, "exec")
exec(_code, {"__name__": "__main__", "__file__": _path})
