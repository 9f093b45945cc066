"""Keeps a log file and a SQLite database open in /tmp across invocations, as functions do.

Each invocation appends a line to the log (through the handle opened at Init), inserts a row
(through the connection opened at Init), and leaves a junk file /tmp/junk-<n> behind. It returns
what it finds, read back by path: the log's lines, the rows, and which junk files are left.
"""

import os
import sqlite3

LOG_PATH = "/tmp/state/app.log"
DB_PATH = "/tmp/state/app.db"

os.makedirs("/tmp/state", exist_ok=True)
log = open(LOG_PATH, "a", buffering=1)  # noqa: SIM115 (held for the environment's life)
db = sqlite3.connect(DB_PATH)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS runs (n INTEGER)")
invocation = 0


def handler(event, context):
    global invocation
    invocation += 1
    junk_left = sorted(name for name in os.listdir("/tmp") if name.startswith("junk-"))
    log.write(f"invocation {invocation}\n")
    db.execute("INSERT INTO runs VALUES (?)", (invocation,))
    db.commit()
    with open(f"/tmp/junk-{invocation}", "wb") as junk:
        junk.write(b"j" * 65536)
    with open(LOG_PATH) as again:
        lines = again.read().splitlines()
    with sqlite3.connect(DB_PATH) as other:
        rows = [n for (n,) in other.execute("SELECT n FROM runs ORDER BY n")]
    return {"invocation": invocation, "lines": lines, "rows": rows, "junkLeft": junk_left}
