"""One exception hierarchy, and the one place where OSError becomes a domain error.

Every error carries a stable ``code`` (used in ``--json``), a message that
says what happened and what to do, and the exit code the CLI should use.
"""

from __future__ import annotations

import errno as _errno
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_PRIVILEGES = 4
EXIT_INTERRUPTED = 130


class BinfmtError(Exception):
    """Base of every error binfmtctl raises on purpose."""

    code = "error"
    exit_code = EXIT_FAILED

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as built, not by calling ``__init__`` again with the finished message.

        Errors cross process boundaries (``rootless.call``, ``sandbox.run``); the
        default reduction re-ran ``__init__(message)``, so subclasses whose
        ``__init__`` composes the message wrapped it a second time.
        """
        return (_rebuild, (type(self), self.args, self.__dict__))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        for key, value in self.context.items():
            if value is not None:
                out[key] = value
        return out


def _rebuild(cls: type[BinfmtError], args: tuple[Any, ...], state: dict[str, Any]) -> BinfmtError:
    """An unpickled error exactly as it was raised (see ``BinfmtError.__reduce__``)."""
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class UsageError(BinfmtError):
    code = "usage"
    exit_code = EXIT_USAGE


class UnknownArchError(UsageError):
    code = "unknown_arch"

    def __init__(self, word: str, suggestions: list[str] | None = None) -> None:
        hint = f" (did you mean {', '.join(suggestions)}?)" if suggestions else ""
        super().__init__(
            f"unknown architecture {word!r}{hint}; `binfmtctl arches` lists them",
            arch=word,
        )


class EntryParseError(BinfmtError):
    """A register string the kernel would reject.

    ``position`` is the byte offset of the offending byte in the input;
    ``str()`` shows the input with a caret under it, packaging-style.
    """

    code = "invalid_entry"

    def __init__(self, reason: str, data: bytes, position: int, field: str) -> None:
        self.reason = reason
        self.data = data
        self.position = position
        self.field = field
        shown = data.decode("latin-1").translate(_SHOW)
        caret = " " * min(position, len(shown)) + "^"
        super().__init__(
            f"invalid {field}: {reason}\n    {shown}\n    {caret}",
            field=field,
            position=position,
        )


class NameTooLongError(EntryParseError):
    code = "name_too_long"


# Make control bytes visible on one line without changing their positions.
_SHOW = {i: "?" for i in range(32)} | {127: "?"}


class NotMountedError(BinfmtError):
    code = "not_mounted"


class PermissionDeniedError(BinfmtError):
    code = "permission_denied"
    exit_code = EXIT_PRIVILEGES


class EntryExistsError(BinfmtError):
    code = "entry_exists"


class NoSuchEntryError(BinfmtError):
    code = "no_such_entry"


class InterpreterError(BinfmtError):
    code = "interpreter"


class RefusedError(BinfmtError):
    """binfmtctl will not do this without being told (--force, --replace, ...)."""

    code = "refused"


class ForeignFileError(RefusedError):
    """A file binfmtctl would replace or remove is not its own (no marker)."""

    code = "foreign_file"


class NotBinfmtMiscError(RefusedError):
    """A --mountpoint that holds another file system: nothing is written there."""

    code = "not_binfmt_misc"


class InvalidNameError(UsageError, RefusedError):
    """A name the kernel could never have given an entry (``..``, ``a/b``, ``status``)."""

    code = "invalid_name"


class ReadOnlyError(BinfmtError):
    """A read-only mount: privileges would not help, so not exit 4."""

    code = "read_only"


class SandboxError(BinfmtError):
    code = "sandbox"


class EngineError(BinfmtError):
    """A container engine is missing, unreachable, or refused a request."""

    code = "engine"


def engine_error(err: OSError, engine: str, binary: str) -> EngineError:
    """Why the engine's command could not even be started."""
    return EngineError(
        f"cannot run {binary}: {err.strerror or err}; is {engine} installed?",
        engine=engine,
        errno=_errno.errorcode.get(err.errno or 0),
    )


class RootlessUnavailableError(SandboxError):
    """This kernel or its settings give an unprivileged user no private binfmt_misc."""

    code = "rootless_unavailable"
    exit_code = EXIT_PRIVILEGES


class RootfsError(BinfmtError):
    """``rootfs create`` could not build or check a root (nothing half-built is left)."""

    code = "rootfs"


class RootfsPrerequisiteError(RootfsError):
    """A program or an id range the build needs is missing; the message says how to get it."""

    code = "rootfs_prerequisite"


class SubordinateIdsError(RootfsPrerequisiteError):
    """An ordinary user without a subordinate id range: an administrator must add one."""

    code = "no_subordinate_ids"
    exit_code = EXIT_PRIVILEGES


class MirrorError(RootfsError):
    """The mirror did not answer, or does not have the suite or the arch."""

    code = "mirror_unreachable"


class ExecError(BinfmtError):
    """The command given to ``binfmtctl run`` could not be started (shell's 126)."""

    code = "exec"
    exit_code = 126


class CommandNotFoundError(ExecError):
    code = "command_not_found"
    exit_code = 127


def exec_error(err: OSError, program: str) -> ExecError:
    """Why exec'ing ``program`` failed, in words, with the shell's exit status."""
    if err.errno == _errno.ENOENT:
        return CommandNotFoundError(
            f"cannot run {program}: no such file or directory (or its ELF loader is "
            "missing: a dynamically linked foreign program needs its libraries, "
            "e.g. inside --rootfs)",
            program=program,
        )
    if err.errno == _errno.ENOEXEC:
        return ExecError(
            f"cannot run {program}: exec format error; no handler registered here "
            "matches it (a foreign program whose arch is not among --arch, or not a "
            "program at all)",
            program=program,
            errno="ENOEXEC",
        )
    return ExecError(
        f"cannot run {program}: {err.strerror}",
        program=program,
        errno=_errno.errorcode.get(err.errno or 0),
    )


class InterruptError(BinfmtError):
    """A termination signal stopped the command (after its children and temp files went)."""

    code = "interrupted"

    def __init__(self, signal_name: str, signum: int) -> None:
        super().__init__(f"interrupted by {signal_name}", signal=signal_name)
        self.exit_code = 128 + signum


class KernelRejectedError(BinfmtError):
    code = "kernel_rejected"


class ConfigError(BinfmtError):
    """A persistent configuration file (binfmt.d, binfmt-support) we cannot use."""

    code = "config"


def config_error(err: OSError, action: str, path: str) -> BinfmtError:
    """An OSError on a configuration file or directory, in words."""
    if err.errno == _errno.ENOENT:
        return ConfigError(f"cannot {action}: {path} does not exist", path=path, errno="ENOENT")
    if err.errno == _errno.EROFS:
        # Not exit 4: no privilege makes a read-only mount writable.
        return ReadOnlyError(
            f"cannot {action}: read-only file system ({path}); remount it read-write, or "
            "choose another directory (--binfmt-d, --root, -o)",
            path=path,
            errno="EROFS",
        )
    if err.errno in (_errno.EACCES, _errno.EPERM):
        return PermissionDeniedError(
            f"cannot {action}: {err.strerror} ({path}); run as root, or choose "
            "another directory (--binfmt-d, --root, -o)",
            path=path,
            errno=_errno.errorcode.get(err.errno or 0),
        )
    return ConfigError(
        f"cannot {action}: {err.strerror} ({path})",
        path=path,
        errno=_errno.errorcode.get(err.errno or 0),
    )


def from_oserror(err: OSError, action: str, path: str | None = None, **context: Any) -> BinfmtError:
    """Translate an OSError from ``action`` into the matching domain error.

    ``action`` is a short phrase such as "register qemu-arm"; the message ends
    with what the user can do about it.
    """
    where = f" ({path})" if path else ""
    code = err.errno
    reason = _errno.errorcode.get(code or 0, "?")
    ctx: dict[str, Any] = {"errno": reason, "path": path, **context}
    if code in (_errno.EACCES, _errno.EPERM):
        if os.geteuid() == 0:
            # Root without the privilege: a container or a user namespace.
            hint = (
                "this process is root but lacks CAP_SYS_ADMIN over it (in a container, "
                "run it with --privileged; in a user namespace, change the host from "
                "outside it)"
            )
        else:
            hint = (
                "this needs privileges: run it as root (`sudo binfmtctl ...`), or use "
                "`binfmtctl run` for a private instance that needs no root"
            )
        return PermissionDeniedError(f"cannot {action}: permission denied{where}; {hint}", **ctx)
    if code == _errno.EEXIST:
        return EntryExistsError(
            f"cannot {action}: an entry with that name is already registered; "
            "use --replace to replace it",
            **ctx,
        )
    if code == _errno.ENOENT:
        return NoSuchEntryError(f"cannot {action}: no such file{where}", **ctx)
    if code == _errno.EROFS:
        # Not exit 4: no privilege makes a read-only mount writable.
        return ReadOnlyError(
            f"cannot {action}: read-only file system{where}; remount it read-write "
            "(in a container: run it privileged, or on the host)",
            **ctx,
        )
    return KernelRejectedError(
        f"cannot {action}: {err.strerror or reason}{where}",
        **ctx,
    )


def register_error(err: OSError, name: str, interpreter: str, fixed: bool) -> BinfmtError:
    """Why the kernel refused to register ``name``, in words."""
    if err.errno == _errno.EEXIST:
        return EntryExistsError(
            f"{name} is already registered with another definition; use --replace to replace it",
            entry=name,
        )
    why = {
        _errno.ENOENT: "does not exist",
        _errno.EACCES: "is not an executable file (or sits on a noexec mount)",
        _errno.ETXTBSY: "is open for writing (being installed?)",
        _errno.ENAMETOOLONG: "has too long a path",
    }.get(err.errno or 0)
    if fixed and why:
        return InterpreterError(
            f"cannot register {name}: the interpreter {interpreter} {why}; "
            "with the F flag the kernel opens it at registration",
            entry=name,
            interpreter=interpreter,
            errno=_errno.errorcode.get(err.errno or 0),
        )
    return from_oserror(err, f"register {name}", entry=name)


def entry_error(err: OSError, action: str, name: str, mountpoint: str) -> BinfmtError:
    """An OSError on an entry file (or ``status``): a missing entry says so by name."""
    if err.errno == _errno.ENOENT:
        return NoSuchEntryError(
            f"cannot {action}: no entry named {name!r} in {mountpoint}", entry=name
        )
    return from_oserror(err, action, f"{mountpoint}/{name}", entry=name)
