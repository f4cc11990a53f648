"""The environment of a command inside a root file system: root's own, and the caller's few.

A command in a root runs as its root, so it gets what a root login there
would have (HOME, USER, LOGNAME, SHELL from the root's own /etc/passwd, PWD,
the standard PATH); of the caller's variables only the terminal, the language
and the proxies go in (:data:`KEPT_IN_ROOT`): the caller's HOME, tokens and
the like stay outside.
"""

from __future__ import annotations

import os

from binfmtctl import rootpath

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Mapping

#: PATH inside a root file system: the standard one of a Linux root.
ROOTFS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The caller's variables a root keeps (plus every LC_*): the terminal, the
#: language and the proxies apt and curl need; the rest stays outside.
KEPT_IN_ROOT = (
    "TERM", "LANG", "LANGUAGE", "http_proxy", "https_proxy", "ftp_proxy", "no_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "all_proxy", "ALL_PROXY",
)  # fmt: skip


def login_shell(rootfs: str) -> str:
    """The shell root logs in with in ``rootfs`` (its /etc/passwd), else /bin/sh.

    The root's own passwd, read inside it (symlinks followed there, a FIFO or
    device never opened); a shell it names that is not an executable file in
    the root does not count.
    """
    try:
        with rootpath.locate(rootfs, "/etc/passwd") as (fd, name):
            text = rootpath.read_at(fd, name, "/etc/passwd", limit=1 << 20) if name else b""
    except OSError:
        text = b""
    for line in text.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] == "root" and fields[6].startswith("/"):
            found = rootpath.resolve_in(rootfs, fields[6])
            if found and os.path.isfile(found) and os.access(found, os.X_OK):
                return fields[6]
            break
    return "/bin/sh"


def root_environment(
    shell: str, workdir: str = "/", environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a command inside a root: root's own, with the caller's kept few.

    HOME, USER, LOGNAME, SHELL and PWD as a root login has them, the standard
    PATH, and from ``environ`` (the caller's) only TERM, the language (LANG,
    LANGUAGE, LC_*) and the proxies (:data:`KEPT_IN_ROOT`).
    """
    environ = os.environ if environ is None else environ
    env = {
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "SHELL": shell,
        "PWD": workdir,
        "PATH": ROOTFS_PATH,
    }
    for key, value in environ.items():
        if key in KEPT_IN_ROOT or key.startswith("LC_"):
            env[key] = value
    return env
