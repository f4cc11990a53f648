"""Checks ``rootfs create`` makes before it writes anything, and the host facts it uses.

Programs (mmdebstrap, newuidmap, Ubuntu's key), the caller's subordinate id
range, the target, and the mirror (its Release file: reachable, has the suite
and the arch). Each refusal names the fix.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from binfmtctl import interpreters, sandbox
from binfmtctl import rootfs_plan as rp
from binfmtctl.errors import (
    MirrorError,
    RootfsPrerequisiteError,
    SubordinateIdsError,
    UsageError,
)

SOURCES_LIST = "/etc/apt/sources.list"
SOURCES_DIR = "/etc/apt/sources.list.d"
MIRROR_TIMEOUT = 20.0


def host_facts(
    os_release: str = "/etc/os-release",
    sources_list: str = SOURCES_LIST,
    sources_dir: str = SOURCES_DIR,
) -> rp.Host:
    """This machine's distro, release and apt sources (unreadable files are skipped)."""
    sources: list[rp.Source] = []
    for path in [sources_list, *sorted(glob.glob(f"{sources_dir}/*.list"))]:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            sources += rp.parse_one_line_sources(Path(path).read_text())
    for path in sorted(glob.glob(f"{sources_dir}/*.sources")):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            sources += rp.parse_deb822_sources(Path(path).read_text())
    return rp.Host.from_texts(interpreters.os_release(os_release), sources)


def _family() -> str | None:
    return interpreters.distro_family(interpreters.os_release())


# -- checks before anything is written ------------------------------------------


def check_programs(spec: rp.Spec) -> str:
    """The engine's path; RootfsPrerequisiteError naming the package when a program is missing."""
    engine = shutil.which(rp.ENGINE)
    if engine is None:
        raise RootfsPrerequisiteError(
            f"{rp.ENGINE} is not installed (not found on PATH); "
            f"{rp.engine_package_hint(_family())}",
            program=rp.ENGINE,
        )
    if spec.keyring and not os.path.exists(spec.keyring):
        raise RootfsPrerequisiteError(
            f"an Ubuntu root needs Ubuntu's archive key ({spec.keyring}); "
            "install it: `sudo apt-get install ubuntu-keyring`",
            path=spec.keyring,
        )
    return engine


def _range_of(path: str, user: str, uid: int) -> bool:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        parts = line.strip().split(":")
        ours = len(parts) == 3 and parts[0] in (user, str(uid)) and parts[2].isdigit()
        if ours and int(parts[2]) >= rp.SUBID_COUNT - 1:
            return True
    return False


def check_ids(subuid: str = sandbox.SUBUID, subgid: str = sandbox.SUBGID) -> None:
    """An ordinary user needs a subordinate range and newuidmap/newgidmap; root does not."""
    if os.geteuid() == 0:
        return
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    if not (_range_of(subuid, user, uid) and _range_of(subgid, user, uid)):
        texts = []
        for path in (subuid, subgid):
            with contextlib.suppress(OSError):
                texts.append(Path(path).read_text())
        start = rp.free_subordinate_start(texts)
        raise SubordinateIdsError(
            f"{user} has no subordinate id range, which a root's files (owned by root, "
            f"_apt, man, ...) need; as root, {rp.subordinate_fix(user, start)}",
            user=user,
        )
    for tool in ("newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            raise RootfsPrerequisiteError(
                f"{tool} is not installed (not found on PATH); it maps your subordinate "
                f"ids; install it: {rp.newuidmap_hint(_family())}",
                program=tool,
            )


def check_target(target: str, fmt: rp.Format) -> None:
    """A directory must be missing or empty; a file must not exist yet; its parent must."""
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise UsageError(f"{target}: its directory {parent} does not exist")
    if fmt == rp.Format.DIR:
        if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
            raise UsageError(f"{target}: exists and is not a directory; name a new or empty one")
        if os.path.isdir(target) and os.listdir(target):
            raise UsageError(
                f"{target}: directory not empty; name a new or empty directory "
                "(nothing in it was changed)"
            )
        return
    if os.path.lexists(target):
        raise UsageError(f"{target}: already exists; name a new file (it was not changed)")


def check_mirror(spec: rp.Spec, timeout: float = MIRROR_TIMEOUT) -> None:
    """Fetch the suite's Release file: the mirror answers, has the suite, and the arch."""
    url = rp.release_url(spec)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - http(s)/file
            text = answer.read(4 << 20).decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        raise MirrorError(
            f"mirror {spec.mirror} has no {spec.distro.value} suite {spec.suite} "
            f"({url}: HTTP {err.code}); check --suite, or pass --mirror",
            url=url,
        ) from err
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise MirrorError(
            f"mirror {spec.mirror} is unreachable ({url}: {reason}); check the network "
            "or a proxy (http_proxy), or pass --mirror URL",
            url=url,
        ) from err
    arches = rp.release_architectures(text)
    if arches is not None and spec.deb_arch not in arches:
        raise UsageError(
            f"{spec.distro.value} {spec.suite} on {spec.mirror} has no {spec.deb_arch} "
            f"(it has {', '.join(sorted(arches))}); choose another --suite or --mirror"
        )
