"""Builds a layout in /tmp that a careless purge would mishandle, then reports what is left.

Event {"action": "build", "token": T}: builds it (the test gives /mnt/efs, an --efs mount holding
files). It first makes the folder /tmp/bind and the file /tmp/T, and waits (up to 60 s) for the
test to bind-mount a folder of /mnt/efs holding `bound-marker` onto /tmp/bind;
{"action": "list"}: every entry below /tmp, as repr() of its bytes path relative to /tmp;
{"action": "unlock"}: the same after making the unreadable folder readable again.
"""

import os
import socket
import time

MANY = 50_000
PER_DIR = 5_000
DEPTH = 300


def touch(path: bytes, data: bytes = b"x") -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def await_bind_mount(token: str) -> None:
    os.mkdir(b"/tmp/bind")
    touch(os.fsencode(f"/tmp/{token}"))
    deadline = time.monotonic() + 60
    while not os.path.exists(b"/tmp/bind/bound-marker"):
        if time.monotonic() > deadline:
            raise TimeoutError("nothing was mounted on /tmp/bind")
        time.sleep(0.02)
    os.unlink(os.fsencode(f"/tmp/{token}"))


def build(token: str) -> dict:
    await_bind_mount(token)
    os.chdir(b"/tmp")
    os.symlink(b"/mnt/efs/data", b"to-efs")  # a folder on another mount, holding files
    os.symlink(b"/mnt/efs/data/precious", b"to-efs-file")
    os.symlink(b"loop-b", b"loop-a")
    os.symlink(b"loop-a", b"loop-b")
    os.symlink(b".", b"self")
    os.symlink(b"..", b"parent")
    touch(b"h1", b"h" * 100_000)
    os.mkdir(b"sub")
    os.link(b"h1", b"sub/h2")
    os.mkdir(b"keep")
    touch(b"keep/k.db", b"k" * 50_000)
    os.link(b"keep/k.db", b"k-link")
    touch(b"state.db", b"s" * 1000)
    os.mkdir(b"_MEI4242")  # DEFAULT_KEEP: another extension's unpacked binary
    touch(b"_MEI4242/libpython.so", b"m" * 1000)
    os.mkdir(b"locked")
    touch(b"locked/inside", b"l" * 1000)
    os.chmod(b"locked", 0)
    os.mkfifo(b"fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(b"sock")
    server.close()  # the socket file stays
    for name in (b"new\nline", b"\xff\xfe", b"caf\xe9", b"\n"):
        touch(name)
        os.mkdir(name + b".d")
        touch(name + b".d/" + name)
    fd = os.open(b".", os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(DEPTH):
        os.mkdir(b"deep", dir_fd=fd)
        child = os.open(b"deep", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    os.mkdir(b"many")
    for i in range(MANY):
        if i % PER_DIR == 0:
            os.mkdir(b"many/d%d" % (i // PER_DIR))
        touch(b"many/d%d/f%d" % (i // PER_DIR, i))
    return listing()


def listing() -> dict:
    entries = []
    pending = [b""]
    while pending:
        rel = pending.pop()
        path = b"/tmp/" + rel if rel else b"/tmp"
        try:
            names = os.listdir(path) if os.path.isdir(path) and not os.path.islink(path) else []
        except PermissionError:
            names = []
        for name in names:
            child = rel + b"/" + name if rel else name
            entries.append(child)
            pending.append(child)
    # Only a short listing is returned whole (the response of a Lambda function is bounded).
    shown = sorted(repr(e) for e in entries) if len(entries) <= 1000 else None
    return {"count": len(entries), "entries": shown}


def handler(event, context):
    action = (event or {}).get("action", "list")
    if action == "build":
        return build(event["token"])
    if action == "unlock":
        os.chmod(b"/tmp/locked", 0o700)
    return listing()
