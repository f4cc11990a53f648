"""The one note ``run`` gives when only uid 0 can be mapped: once per boot, on stderr, with the fix.

Kept apart from :mod:`binfmtctl.idmaps` (which the namespace code imports):
only a run that says the note needs its words (the per-boot marker is in
:mod:`binfmtctl.bootcache`, which every run loads for its kept plan anyway).
"""

from __future__ import annotations

import os
import sys

from binfmtctl import bootcache
from binfmtctl.idmaps import SUBGID, SUBUID, Refusal, _read

# Where binfmtctl's own notes go: stderr, also while run --json captures the command's.
NOTICE_FD = [2]


def only_root_notice(refusal: Refusal) -> None:
    """Say once per boot (per user) that only uid 0 exists in the namespace, and the fix.

    One line on stderr, never on stdout: a CI loop of ``binfmtctl run`` sees it
    once. Nothing is said for a quiet refusal (a user namespace without the
    ids, as in a container: nothing on this system's side to fix). The marker
    sits next to the native-arch answer (the per-boot cache); where that
    cannot be written, the line is said every time.
    """
    if refusal.quiet:
        return
    marker = bootcache.marker("only-root-notice")
    if marker is not None and marker.seen():
        return
    fixes = []
    if refusal.missing_range:
        from binfmtctl import (
            rootfs_plan,  # start-up speed: the fix's words, once per boot
        )

        texts = [_read(p) or "" for p in (SUBUID, SUBGID)]
        start = rootfs_plan.free_subordinate_start(texts)
        fixes.append(rootfs_plan.subordinate_fix(refusal.user, start))
    if refusal.missing_tools:
        fixes.append("install newuidmap/newgidmap: `sudo apt-get install uidmap`")
    fallback = "check your lines in /etc/subuid and /etc/subgid, and newuidmap (package uidmap)"
    fix = "; ".join(fixes) or fallback
    line = (
        f"binfmtctl: note: only uid 0 is mapped in the namespace ({refusal.words}), so package "
        f"managers (apt, dnf, apk) in a root will fail to change file owners; to map "
        f"uids 0..65535 by default, {fix}; `--uid-map none` says this is meant (said "
        "once per boot)\n"
    )
    sys.stderr.flush()
    try:
        os.write(NOTICE_FD[0], line.encode())
    except OSError:
        pass
    if marker is not None:
        marker.mark()
