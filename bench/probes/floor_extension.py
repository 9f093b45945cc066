"""The floor for a Python extension: register, then wait on /event/next until SHUTDOWN.

The benchmark puts this in place of the layer's entry script, so that the layer's own launcher,
loader and interpreter run it exactly as they run the monitor. It imports only `socket` and
`json` and speaks HTTP/1.1 over a plain socket, one connection per call: http.client would cost
more than the whole floor (it pulls in the email package), and the monitor avoids it too, so a
floor built on it would flatter the monitor. It registers for the monitor's events and writes
on stderr the times of its registration and of its first call to /event/next (with the CPU
time it has used by then), which the benchmark sets against the launch time.
"""

import json
import os
import socket
import sys
import time

API = "/2020-01-01/extension"


def call(
    address: tuple[str, int], method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[dict[str, str], bytes]:
    head = [
        f"{method} {API}{path} HTTP/1.1",
        f"Host: {address[0]}",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(address) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw_head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    fields = {}
    for line in raw_head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return fields, payload


def main() -> int:
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
    address = (host, int(port or 80))
    print(f"BENCH register {time.time():.6f}", file=sys.stderr, flush=True)
    body = json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode()
    fields, _ = call(address, "POST", "/register", {"Lambda-Extension-Name": "tmp-monitor"}, body)
    identifier = {"Lambda-Extension-Identifier": fields.get("lambda-extension-identifier", "")}
    print(f"BENCH next {time.time():.6f} {time.process_time():.6f}", file=sys.stderr, flush=True)
    while True:
        _, payload = call(address, "GET", "/event/next", identifier)
        event = json.loads(payload or b"{}")
        if str(event.get("eventType", "")).upper() == "SHUTDOWN":
            return 0


sys.exit(main())
