"""Entry script that times the monitor: the layer's own bootstrap, watched from inside.

The benchmark renames the layer's `bootstrap.py` to `bootstrap_monitor.py` and puts this in its
place. It puts a subclass of the interpreter's built-in `_socket.socket` in its place, whose
`sendall` every HTTP request of the monitor goes through (its registration uses `_socket`
itself; `socket.socket` subclasses it when imported), and writes on stderr the times of the
registration and of the first call to /event/next (with the process's CPU time then), and the
body of the Telemetry API subscription. Then it runs the real bootstrap unchanged in this
interpreter. It imports only built-in modules, so that the monitor's imports stay what they are.
"""

import _socket
import os
import time

_seen: set[str] = set()
_body_follows = [False]


def _note(key: str, text: str) -> None:
    if key not in _seen:
        _seen.add(key)
        os.write(2, f"BENCH {key} {text}\n".encode())


def _watch(data: bytes) -> None:
    line = bytes(data[:200]).split(b"\r\n", 1)[0]
    if b"/extension/event/next" in line:
        _note("next", f"{time.time():.6f} {time.process_time():.6f}")
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


class _Socket(_socket.socket):
    __slots__ = ()

    def sendall(self, data, *args):
        _watch(data)
        return super().sendall(data, *args)


_socket.socket = _Socket

_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap_monitor.py")
with open(_path, encoding="utf-8") as _source:
    _code = compile(_source.read(), _path, "exec")
exec(_code, {"__name__": "__main__", "__file__": _path})
