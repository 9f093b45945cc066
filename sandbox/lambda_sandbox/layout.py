"""What the layers put where Lambda looks: the extension files of /opt/extensions."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path


def extension_files(layers: tuple[Path, ...]) -> tuple[str, ...]:
    """File names in /opt/extensions that will be started, in lexical order (Lambda's order).

    Layers are merged in order, a later one overriding an earlier one's file of the same name.
    """
    executable: dict[str, bool] = {}
    for layer in layers:
        if layer.is_dir():
            folder = layer / "extensions"
            if folder.is_dir():
                for entry in folder.iterdir():
                    if not entry.is_dir():
                        executable[entry.name] = os.access(entry, os.X_OK)
            continue
        with zipfile.ZipFile(layer) as archive:
            for info in archive.infolist():
                parts = info.filename.split("/")
                if len(parts) == 2 and parts[0] == "extensions" and parts[1] and not info.is_dir():
                    mode = info.external_attr >> 16
                    executable[parts[1]] = bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    return tuple(sorted(name for name, runs in executable.items() if runs))
