"""The layer zips' sizes, per architecture."""

from __future__ import annotations

from bench.common import MIB, Context
from bench.table import Row, failed

ARCHES = ("x86_64", "arm64")


def measure(ctx: Context) -> list[Row]:
    rows = []
    for arch in ARCHES:
        path = ctx.dist / f"tmp-monitor-{arch}.zip"
        if path.name == ctx.layer_zip.name:
            path = ctx.layer_zip  # the snapshot the other suites attach
        what = f"layer zip, {arch}"
        if not path.is_file():
            rows.append(failed(f"zip_{arch}", what, "MiB", f"{path} is not built", 25))
            continue
        size = path.stat().st_size
        rows.append(
            Row(
                f"zip_{arch}",
                what,
                size / MIB,
                "MiB",
                f"{size / MIB:.1f} MiB ({size:,} bytes)",
                25,
                {"bytes": size},
            )
        )
    return rows
