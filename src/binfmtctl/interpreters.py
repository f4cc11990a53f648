"""Finding an emulator for an arch, and judging whether it is fit for a handler.

A handler with the F flag keeps working inside chroots and containers only if
its interpreter is statically linked; the C flag runs the interpreter with the
binary's credentials, so it must not be replaceable by anyone but root (see
:mod:`binfmtctl.credentials`). A candidate that is not an ELF executable for
this machine's CPU (an empty file, a script, a foreign build) is never chosen.
"""

from __future__ import annotations

import enum
import os
import stat

from binfmtctl import arch as _arch
from binfmtctl import elf, host

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

ET_EXEC, ET_DYN = 2, 3

DEFAULT_DIRS: tuple[str, ...] = ("/usr/bin", "/usr/local/bin", "/usr/libexec/qemu-binfmt")

# Fedora splits qemu-user-static by family; other distros ship one package.
_FEDORA_FAMILY = {
    "i386": "x86", "arm": "arm", "armeb": "arm", "ppc": "ppc", "ppcle": "ppc",
    "riscv32": "riscv", "riscv64": "riscv", "loongarch": "loongarch64",
    "xtensaeb": "xtensa", "microblazeel": "microblaze",
}  # fmt: skip


class Problem(str, enum.Enum):
    """Why a file cannot be an emulator on this machine (stable codes)."""

    UNREADABLE = "unreadable"
    NOT_REGULAR = "not_regular"
    EMPTY = "empty"
    SCRIPT = "script"
    NOT_ELF = "not_elf"
    NOT_PROGRAM = "not_program"  # an ELF object, core dump or library stub
    FOREIGN_CPU = "foreign_cpu"
    NOT_EXECUTABLE = "not_executable"


class _Record:
    """A read-only record compared by value (a dataclass costs ~10 ms of imports at start-up)."""

    __slots__ = ()
    _FIELDS: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only (cannot set {name})")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__name__}({inner})"


class Interpreter(_Record):
    """An emulator binary on this machine and what we know about it."""

    __slots__ = ("codes", "host_native", "path", "problems", "static")
    _FIELDS = ("path", "static", "host_native", "problems", "codes")

    path: str
    static: bool
    host_native: bool  # built for this machine's CPU
    problems: tuple[str, ...]
    codes: tuple[Problem, ...]  # one per problem, same order

    def __init__(
        self,
        path: str,
        static: bool,
        host_native: bool,
        problems: tuple[str, ...] = (),
        codes: tuple[Problem, ...] = (),
    ) -> None:
        for name, value in zip(
            self._FIELDS, (path, static, host_native, problems, codes), strict=True
        ):
            object.__setattr__(self, name, value)

    @property
    def usable(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "static": self.static,
            "problems": list(self.problems),
        }


def candidates(arch: _arch.Arch) -> list[str]:
    """File names that may hold arch's emulator, best first."""
    stem = arch.emulator_name
    return [f"{stem}-static", stem]


def targets(path: str) -> tuple[_arch.Arch, ...]:
    """The arches an emulator's file name says it runs, or () if the name says nothing.

    QEMU names its user-mode binaries qemu-TARGET (qemu-TARGET-static in
    static builds; Debian's binfmt wrappers are TARGET-binfmt-P); the catalog
    knows each arch's TARGET (qemu-i386 runs i386 and i486).
    """
    base = os.path.basename(path)
    for suffix in ("-static", "-binfmt-P", "-binfmt"):
        base = base.removesuffix(suffix)
    if not base.startswith("qemu-"):
        base = f"qemu-{base}"
    return tuple(a for a in _arch.CATALOG.values() if a.emulator_name == base)


Finding = tuple[Problem, str]  # a problem's code and its words


def judge(header: bytes, size: int, host_families: Collection[str] | None) -> tuple[Finding, ...]:
    """What stops a file with this header from being run as an emulator here.

    Pure: ``header`` is the file's first bytes, ``size`` its length,
    ``host_families`` the catalog families this machine's CPU runs (None:
    unknown, so the CPU is not judged).
    """
    if size == 0:
        return ((Problem.EMPTY, "an empty file, not an ELF executable"),)
    ident = elf.identity(header)
    if ident is None:
        if elf.shebang(header) is not None:
            return ((Problem.SCRIPT, "a #! script, not an ELF executable"),)
        return ((Problem.NOT_ELF, "not an ELF executable"),)
    if ident.e_type not in (ET_EXEC, ET_DYN):
        kind = elf.ET_NAMES.get(ident.e_type, f"type {ident.e_type}")
        return ((Problem.NOT_PROGRAM, f"an ELF file of type {kind}, not an executable"),)
    found = ident.arch
    if host_families is not None and (found is None or found.family not in host_families):
        built = found.name if found is not None else f"machine {ident.machine}"
        return ((Problem.FOREIGN_CPU, f"built for {built}, not for this machine's CPU"),)
    return ()


class Fitness(_Record):
    """A file looked at as an emulator: its first bytes and what is wrong with it."""

    __slots__ = ("header", "problems")
    _FIELDS = ("header", "problems")

    header: bytes  # zero-filled to elf.HEADER_SIZE; empty if it could not be read
    problems: tuple[Finding, ...]

    def __init__(self, header: bytes, problems: tuple[Finding, ...]) -> None:
        object.__setattr__(self, "header", header)
        object.__setattr__(self, "problems", problems)


def fitness(path: str, host_families: Collection[str] | None) -> Fitness:
    """Read ``path`` (never blocking on a FIFO) and :func:`judge` it."""
    return look(path, host_families)[0]


def look(
    path: str, host_families: Collection[str] | None, loader: bool = False
) -> tuple[Fitness, str | None]:
    """:func:`fitness`, and with ``loader`` the file's PT_INTERP read through the same
    open file (one open per emulator: ``status`` asks both of every entry's).

    The loader is None where :func:`elf.program_interpreter` has none to give: a
    static program, and a file that is not regular or cannot be read.
    """
    if "\0" in path:
        return (
            Fitness(b"", ((Problem.UNREADABLE, "cannot read it: its name contains a NUL byte"),)),
            None,
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        return Fitness(b"", ((Problem.UNREADABLE, f"cannot read it: {err.strerror}"),)), None
    found = None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return Fitness(b"", ((Problem.NOT_REGULAR, "not a regular file"),)), None
        header = os.read(fd, elf.HEADER_SIZE)
        if loader:
            found = elf.program_interpreter_at(fd, header)
    except OSError as err:
        return Fitness(b"", ((Problem.UNREADABLE, f"cannot read it: {err.strerror}"),)), None
    finally:
        os.close(fd)
    header += bytes(elf.HEADER_SIZE - len(header))
    return Fitness(header, judge(header, info.st_size, host_families)), found


def inspect(path: str) -> Interpreter:
    """Look at an emulator binary: an ELF executable for this CPU? static? executable?

    A few small reads (header, program headers) and an access check: about 40 us
    on a 2-core x86_64, less than reading a cache would cost, so none is kept.
    """
    me = host.host_arch()
    found = fitness(path, {me.family} if me else None).problems
    problems = [message for _, message in found]
    codes = [code for code, _ in found]
    if any(code is not Problem.FOREIGN_CPU for code in codes):
        return Interpreter(path, False, False, tuple(problems), tuple(codes))
    native = not codes
    static = elf.program_interpreter(path) is None
    if not os.access(path, os.X_OK):
        problems.append("not executable")
        codes.append(Problem.NOT_EXECUTABLE)
    return Interpreter(path, static, native, tuple(problems), tuple(codes))


class Search(_Record):
    """Every candidate looked at for one arch: the best usable one and the refused."""

    __slots__ = ("best", "refused")
    _FIELDS = ("best", "refused")

    best: Interpreter | None
    refused: tuple[Interpreter, ...]

    def __init__(self, best: Interpreter | None, refused: tuple[Interpreter, ...]) -> None:
        object.__setattr__(self, "best", best)
        object.__setattr__(self, "refused", refused)

    def why_none(self) -> str:
        """The refused candidates and why, for a "no emulator" message."""
        return "; ".join(f"{i.path}: {', '.join(i.problems)}" for i in self.refused)


def search(arch: _arch.Arch, search_dirs: Sequence[str] = DEFAULT_DIRS) -> Search:
    """Look for ``arch``'s emulator in ``search_dirs``: static ones first, unfit ones refused."""
    usable: list[Interpreter] = []
    refused: list[Interpreter] = []
    for name in candidates(arch):
        for directory in search_dirs:
            path = os.path.join(directory, name)
            if not os.path.lexists(path):
                continue
            found = inspect(path)
            (usable if found.usable else refused).append(found)
    ranked = sorted(usable, key=lambda i: not i.static)
    return Search(ranked[0] if ranked else None, tuple(refused))


def find(
    arch: _arch.Arch,
    search_dirs: Sequence[str] = DEFAULT_DIRS,
) -> Interpreter | None:
    """The best emulator for ``arch`` in ``search_dirs``: static ones first, never an unfit one."""
    return search(arch, search_dirs).best


def os_release(path: str = "/etc/os-release") -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def distro_family(release: dict[str, str]) -> str | None:
    ids = [release.get("ID", ""), *release.get("ID_LIKE", "").split()]
    for word in ids:
        for family, names in {
            "debian": ("debian", "ubuntu"),
            "fedora": ("fedora", "rhel", "centos"),
            "arch": ("arch",),
            "alpine": ("alpine",),
            "opensuse": ("opensuse", "suse", "sles", "opensuse-tumbleweed", "opensuse-leap"),
        }.items():
            if word in names:
                return family
    return None


def package_for(arch: _arch.Arch, family: str | None) -> str | None:
    """The distro package that ships arch's static emulator, by distro family."""
    stem = arch.emulator or arch.name
    packages = {
        "debian": "qemu-user-static",
        "fedora": f"qemu-user-static-{_FEDORA_FAMILY.get(arch.family, arch.family)}",
        "arch": "qemu-user-static",
        "alpine": f"qemu-{stem}",
        "opensuse": "qemu-linux-user",
    }
    return packages.get(family or "")


def install_hint(arch: _arch.Arch, release_path: str = "/etc/os-release") -> str:
    """A sentence that says how to get arch's emulator on this distro."""
    return hint_for(arch, distro_family(os_release(release_path)))


def hint_for(arch: _arch.Arch, family: str | None) -> str:
    """:func:`install_hint` for a distro family already known (None: unknown)."""
    package = package_for(arch, family)
    command = {
        "debian": "apt-get install",
        "fedora": "dnf install",
        "arch": "pacman -S",
        "alpine": "apk add",
        "opensuse": "zypper install",
    }.get(family or "")
    if package and command:
        return f"install it with `sudo {command} {package}`"
    return (
        f"install QEMU's user-mode emulator {arch.emulator_name}-static "
        "(Debian/Ubuntu: qemu-user-static) or pass --interpreter PATH"
    )
