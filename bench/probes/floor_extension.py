"""The floor for a Python extension: register, then wait on /event/next until SHUTDOWN.

The benchmark puts this in place of the layer's entry script, so that the layer's own launcher,
loader and interpreter run it exactly as they run the monitor. Standard library only, one
keep-alive connection, the events the monitor registers for. It writes one line on stderr, the
time of its first call to /event/next, which the benchmark sets against the launch time.
"""

import http.client
import json
import os
import sys
import time

API = "/2020-01-01/extension"


def main() -> int:
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
    connection = http.client.HTTPConnection(host, int(port or 80))
    connection.request(
        "POST",
        f"{API}/register",
        body=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}),
        headers={"Lambda-Extension-Name": "tmp-monitor"},
    )
    reply = connection.getresponse()
    identifier = reply.getheader("Lambda-Extension-Identifier") or ""
    reply.read()
    print(f"BENCH next {time.time():.6f}", file=sys.stderr, flush=True)
    while True:
        connection.request(
            "GET", f"{API}/event/next", headers={"Lambda-Extension-Identifier": identifier}
        )
        reply = connection.getresponse()
        event = json.loads(reply.read() or b"{}")
        if str(event.get("eventType", "")).upper() == "SHUTDOWN":
            return 0


sys.exit(main())
