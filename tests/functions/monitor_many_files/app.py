"""Keeps `files` (1,000) files of `size` (4,096) bytes under /tmp/many; `rewrite` writes them all
again (new mtime: their page-cache residency must be measured afresh), else only the missing ones
are written. For the monitor's walk and PostRuntimeMs with many files."""

import os

ROOT = "/tmp/many"


def handler(event, context):
    options = event or {}
    files = int(options.get("files", 1000))
    size = int(options.get("size", 4096))
    rewrite = bool(options.get("rewrite", False))
    data = b"\x5a" * size
    written = 0
    for i in range(files):
        folder = f"{ROOT}/{i // 100:02d}"
        path = f"{folder}/{i:04d}.bin"
        if rewrite or not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            with open(path, "wb") as out:
                out.write(data)
            written += 1
    return {"files": files, "written": written}
