"""Entry script that times the monitor: the layer's own bootstrap, watched from inside.

The benchmark renames the layer's `bootstrap.py` to `bootstrap_monitor.py` and puts this in its
place. It wraps `http.client` (which the monitor's Extensions API client uses) to write on stderr
the time of the first call to /event/next and the body of the Telemetry API subscription, then
runs the real bootstrap unchanged in this interpreter.
"""

import http.client
import os
import sys
import time

_request = http.client.HTTPConnection.request
_putrequest = http.client.HTTPConnection.putrequest
_seen: set[str] = set()


def _note(key: str, text: str) -> None:
    if key not in _seen:
        _seen.add(key)
        print(f"BENCH {key} {text}", file=sys.stderr, flush=True)


def putrequest(self, method, url, *args, **kwargs):
    if url.endswith("/event/next"):
        _note("next", f"{time.time():.6f}")
    return _putrequest(self, method, url, *args, **kwargs)


def request(self, method, url, body=None, *args, **kwargs):
    if method == "PUT" and "/telemetry" in url and body is not None:
        text = body.decode() if isinstance(body, bytes) else str(body)
        _note("subscribe", " ".join(text.split()))
    return _request(self, method, url, body, *args, **kwargs)


http.client.HTTPConnection.putrequest = putrequest
http.client.HTTPConnection.request = request

_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap_monitor.py")
with open(_path, encoding="utf-8") as _source:
    _code = compile(_source.read(), _path, "exec")
exec(_code, {"__name__": "__main__", "__file__": _path})
