"""A program found on PATH as ``shutil.which`` finds it, without importing shutil.

shutil brings bz2, lzma, zlib and fnmatch with it (about 3 ms of every start);
``status`` looks for docker and podman, ``run`` for newuidmap and newgidmap.
tests/test_status_speed.py holds the answers equal to shutil.which's.
"""

from __future__ import annotations

import os


def which(name: str, path: str | None = None) -> str | None:
    """``shutil.which(name, path=path)`` for a bare command name, as on POSIX.

    ``path`` None is $PATH (else the system's default); an empty PATH finds
    nothing, and an empty entry in it (``PATH=:``) is the working directory.
    """
    if path is None:
        path = os.environ.get("PATH")
        if path is None:
            try:
                path = os.confstr("CS_PATH")
            except (AttributeError, ValueError):
                path = os.defpath
    if not path:
        return None
    seen: set[str] = set()
    for directory in path.split(os.pathsep):
        if directory in seen:
            continue
        seen.add(directory)
        found = os.path.join(directory, name)
        if os.path.exists(found) and os.access(found, os.X_OK) and not os.path.isdir(found):
            return found
    return None
