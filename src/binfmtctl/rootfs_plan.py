"""Decisions for ``binfmtctl rootfs create``: pure, from facts handed in.

Which suite and mirror to use (the host's own when it runs that distro),
whether a suite has the asked architecture (knowledge kept as data below),
the Debian and OCI names of an arch, the engine's argv, and how to read the
engine's log for a progress line. Nothing here touches the system; the I/O
lives in :mod:`binfmtctl.rootfs`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from binfmtctl import arch as _arch
from binfmtctl.errors import UsageError

PROVENANCE_PATH = "etc/binfmtctl-rootfs.json"  # inside a directory root
PROVENANCE_SUFFIX = ".binfmtctl-rootfs.json"  # beside a tarball or image archive
PROVENANCE_VERSION = 1


class Distro(str, enum.Enum):
    DEBIAN = "debian"
    UBUNTU = "ubuntu"


class Format(str, enum.Enum):
    DIR = "dir"
    TAR = "tar"
    DOCKER_ARCHIVE = "docker-archive"


# Which architectures each release publishes in its main archive. Release
# order matters: the first suite after a given one that has an arch is the
# one suggested when the asked suite lacks it.
_BOOKWORM = "amd64 arm64 armel armhf i386 mips64el mipsel ppc64el s390x"
_TRIXIE = "amd64 arm64 armel armhf i386 ppc64el riscv64 s390x"
_UBUNTU = "amd64 arm64 armhf ppc64el riscv64 s390x"
SUITE_ARCHES: dict[Distro, tuple[tuple[str, str], ...]] = {
    Distro.DEBIAN: (
        ("buster", _BOOKWORM + " mips"),
        ("bullseye", _BOOKWORM),
        ("bookworm", _BOOKWORM),
        ("trixie", _TRIXIE),
    ),
    Distro.UBUNTU: (("focal", _UBUNTU), ("jammy", _UBUNTU), ("noble", _UBUNTU)),
}
SUITES = {
    distro: tuple((name, frozenset(arches.split())) for name, arches in rows)
    for distro, rows in SUITE_ARCHES.items()
}
STABLE = {Distro.DEBIAN: "trixie", Distro.UBUNTU: "noble"}  # current stable / latest LTS
DEFAULT_MIRRORS = {Distro.DEBIAN: "http://deb.debian.org/debian"}
UBUNTU_MAIN = "http://archive.ubuntu.com/ubuntu"
UBUNTU_PORTS = "http://ports.ubuntu.com/ubuntu-ports"
UBUNTU_MAIN_ARCHES = frozenset({"amd64", "i386"})  # the rest live on ports.ubuntu.com
UBUNTU_KEYRING = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
VARIANTS_WITH_APT = frozenset({"minbase", "buildd", "important", "required", "standard", "apt"})
VARIANTS = ("minbase", "buildd", "important", "required", "standard", "essential", "apt")

# The engine, per distro family: the package that ships it, and how to install it.
ENGINE = "mmdebstrap"
INSTALL_COMMANDS = {
    "debian": "sudo apt-get install mmdebstrap",
    "fedora": "sudo dnf install mmdebstrap",
    "arch": "sudo pacman -S mmdebstrap",
    "opensuse": "sudo zypper install mmdebstrap",
}
NEWUIDMAP_PACKAGES = {"debian": "uidmap", "fedora": "shadow-utils", "arch": "shadow"}


def debian_arch(row: _arch.Arch) -> str:
    """The Debian architecture a root for ``row`` is built for (armhf for arm)."""
    if not row.debian:
        raise UsageError(f"{row.name} has no Debian architecture: no Debian root can be built")
    return row.debian[0]


def suite_has(distro: Distro, suite: str, deb_arch: str) -> bool | None:
    """Whether ``suite`` publishes ``deb_arch``; None for a suite not in :data:`SUITES`."""
    for name, arches in SUITES[distro]:
        if name == suite:
            return deb_arch in arches
    return None


def suites_with(distro: Distro, deb_arch: str) -> list[str]:
    return [name for name, arches in SUITES[distro] if deb_arch in arches]


@dataclass(frozen=True)
class Source:
    """One apt source line or deb822 stanza, as far as mirrors go."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_one_line_sources(text: str) -> list[Source]:
    """``deb [opts] URI SUITE COMPONENT...`` lines (sources.list format)."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)
        words = line.split()
        if len(words) >= 3 and words[0] in ("deb", "deb-src"):
            out.append(Source((words[0],), (words[1],), (words[2],), tuple(words[3:])))
    return out


def parse_deb822_sources(text: str) -> list[Source]:
    """deb822 ``.sources`` stanzas (``Enabled: no`` ones left out)."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += " " + raw.strip()
                continue
            name, sep, value = raw.partition(":")
            if sep:
                key = name.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
            continue
        out.append(
            Source(
                tuple(fields.get("types", "deb").split()),
                tuple(fields["uris"].split()),
                tuple(fields.get("suites", "").split()),
                tuple(fields.get("components", "").split()),
            )
        )
    return out


@dataclass(frozen=True)
class Host:
    """What the host says about itself: /etc/os-release and its apt sources."""

    os_id: str = ""
    codename: str = ""
    sources: tuple[Source, ...] = ()

    @staticmethod
    def from_texts(os_release: Mapping[str, str], sources: Iterable[Source]) -> Host:
        return Host(
            os_release.get("ID", ""),
            os_release.get("VERSION_CODENAME", ""),
            tuple(sources),
        )


def host_mirror(host: Host, distro: Distro, deb_arch: str) -> str | None:
    """The mirror the host's apt uses for its release, when the host runs ``distro``.

    The first ``deb`` source listing the host's codename itself (not
    -security or -updates). For Ubuntu, a host mirror of the main archive
    only serves amd64 and i386; for other arches only a ports mirror counts.
    """
    if host.os_id != distro.value or not host.codename:
        return None
    for source in host.sources:
        if "deb" not in source.types or host.codename not in source.suites:
            continue
        for uri in source.uris:
            ports = "ubuntu-ports" in uri
            if distro == Distro.UBUNTU and ports != (deb_arch not in UBUNTU_MAIN_ARCHES):
                continue
            return uri.rstrip("/")
    return None


def default_mirror(distro: Distro, deb_arch: str) -> str:
    if distro == Distro.UBUNTU:
        return UBUNTU_MAIN if deb_arch in UBUNTU_MAIN_ARCHES else UBUNTU_PORTS
    return DEFAULT_MIRRORS[distro]


@dataclass(frozen=True)
class Spec:
    """Everything that decides what gets built."""

    arch: str  # QEMU catalog name
    deb_arch: str
    distro: Distro
    suite: str
    mirror: str
    variant: str = "minbase"
    components: tuple[str, ...] = ("main",)
    include: tuple[str, ...] = ()
    format: Format = Format.DIR
    suite_from: str = "option"  # option | host | stable: where the suite came from
    mirror_from: str = "option"  # option | host | default
    keyring: str | None = None

    @property
    def oci_platform(self) -> str:
        row = _arch.CATALOG[self.arch]
        if self.deb_arch == "armel":
            return "linux/arm/v5"
        if row.oci:
            return row.oci[0]
        return f"linux/{self.deb_arch}"


@dataclass(frozen=True)
class Request:
    """What the user asked for (None: choose the default)."""

    arch: str
    distro: str = "debian"
    suite: str | None = None
    mirror: str | None = None
    variant: str = "minbase"
    components: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    format: str = "dir"


def _words(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(w for value in values for w in value.replace(",", " ").split())


def decide(request: Request, host: Host) -> Spec:
    """Resolve the request against the host's facts; UsageError for what cannot be built."""
    row = _arch.resolve(request.arch)
    deb = debian_arch(row)
    if request.arch.strip().lower() == "armel":
        deb = "armel"
    try:
        distro = Distro(request.distro)
    except ValueError:
        raise UsageError(
            f"--distro {request.distro}: unknown; choose one of debian, ubuntu"
        ) from None
    try:
        fmt = Format(request.format)
    except ValueError:
        raise UsageError(
            f"--format {request.format}: unknown; choose one of dir, tar, docker-archive"
        ) from None
    if request.variant not in VARIANTS:
        raise UsageError(
            f"--variant {request.variant}: unknown; choose one of {', '.join(VARIANTS)}"
        )
    if request.suite:
        suite, suite_from = request.suite, "option"
    elif host.os_id == distro.value and host.codename:
        suite, suite_from = host.codename, "host"
    else:
        suite, suite_from = STABLE[distro], "stable"
    if suite_has(distro, suite, deb) is False:
        raise UsageError(suite_lacks_arch(distro, suite, deb, suite_from))
    if request.mirror:
        mirror, mirror_from = request.mirror.rstrip("/"), "option"
        if not re.match(r"^(https?|file)://\S+$", mirror):
            raise UsageError(
                f"--mirror {request.mirror}: not a mirror URL (http://, https:// or file://)"
            )
    else:
        found = host_mirror(host, distro, deb)
        mirror, mirror_from = (found, "host") if found else (default_mirror(distro, deb), "default")
    include = _words(request.include)
    if mirror.startswith("https://") and "ca-certificates" not in include:
        include = (*include, "ca-certificates")  # apt inside needs it to reach the mirror
    for word in include:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?", word):
            raise UsageError(f"--include {word}: not a Debian package name")
    components = _words(request.components) or ("main",)
    return Spec(
        arch=row.name,
        deb_arch=deb,
        distro=distro,
        suite=suite,
        mirror=mirror,
        variant=request.variant,
        components=components,
        include=include,
        format=fmt,
        suite_from=suite_from,
        mirror_from=mirror_from,
        keyring=UBUNTU_KEYRING if distro == Distro.UBUNTU and host.os_id != "ubuntu" else None,
    )


def suite_lacks_arch(distro: Distro, suite: str, deb_arch: str, suite_from: str) -> str:
    why = {"host": " (the host's release, the default)", "stable": " (the default)"}
    has = suites_with(distro, deb_arch)
    names = [name for name, _ in SUITES[distro]]
    later = [s for s in has if names.index(s) > names.index(suite)]
    if later:
        fix = f"{later[0]} has it: add --suite {later[0]}"
    elif has:
        fix = f"{', '.join(has)} has it: add --suite {has[-1]}"
    else:
        fix = f"no {distro.value} release binfmtctl knows has it"
    return f"{distro.value} {suite}{why.get(suite_from, '')} has no {deb_arch}; {fix}"


def engine_argv(spec: Spec, target: str, *, engine: str = ENGINE) -> list[str]:
    """The mmdebstrap command line that builds ``spec`` into the directory ``target``.

    unshare mode: inside binfmtctl's private namespace the engine is root over
    ids 0..65535, and its own namespaces need no privilege outside. --verbose
    so the log shows every package (the progress line counts them). The
    package lists are kept, so apt inside works without an `apt-get update`.
    """
    argv = [engine, "--mode=unshare", f"--variant={spec.variant}", f"--arch={spec.deb_arch}"]
    argv.append(f"--components={','.join(spec.components)}")
    if spec.include:
        argv.append(f"--include={','.join(spec.include)}")
    if spec.keyring:
        argv.append(f"--keyring={spec.keyring}")
    if spec.variant in VARIANTS_WITH_APT:
        argv.append("--skip=cleanup/apt/lists")  # `apt-get install` works at once
    argv += ["--verbose", spec.suite, target, spec.mirror]
    return argv


def release_url(spec: Spec) -> str:
    """The suite's Release file: fetched first to prove the mirror answers."""
    return f"{spec.mirror}/dists/{spec.suite}/Release"


def release_architectures(release: str) -> frozenset[str] | None:
    """The ``Architectures:`` field of a Release file, or None without one."""
    for line in release.splitlines():
        if line.lower().startswith("architectures:"):
            return frozenset(line.split(":", 1)[1].split())
    return None


def engine_package_hint(family: str | None) -> str:
    command = INSTALL_COMMANDS.get(family or "")
    if command:
        return f"install it: `{command}`"
    return "install the mmdebstrap package of this distro (it needs apt and dpkg too)"


def newuidmap_hint(family: str | None) -> str:
    package = NEWUIDMAP_PACKAGES.get(family or "", "uidmap")
    command = INSTALL_COMMANDS.get(family or "", "sudo apt-get install mmdebstrap")
    return f"`{command.rsplit(' ', 1)[0]} {package}`"


SUBID_COUNT = 65536


def free_subordinate_start(texts: Iterable[str], floor: int = 100000) -> int:
    """A start for a new 65536-id range that overlaps none in /etc/subuid or /etc/subgid."""
    end = floor
    for text in texts:
        for line in text.splitlines():
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                end = max(end, int(parts[1]) + int(parts[2]))
    return -(-end // SUBID_COUNT) * SUBID_COUNT if end > floor else floor


def subordinate_fix(user: str, start: int) -> str:
    last = start + SUBID_COUNT - 1
    return (
        f"add the line `{user}:{start}:{SUBID_COUNT}` to both /etc/subuid and /etc/subgid, "
        f"or run `sudo usermod --add-subuids {start}-{last} --add-subgids {start}-{last} {user}`"
    )


# -- progress -----------------------------------------------------------------


@dataclass
class Progress:
    """What the engine's log said so far: a phase and package counts."""

    phase: str = "starting"
    downloaded: int = 0
    unpacked: int = 0
    configured: int = 0
    tail: list[str] = field(default_factory=list)

    def feed(self, line: str) -> bool:
        """Take one log line; True when the visible line changed."""
        self.tail = [*self.tail[-19:], line]
        if line.startswith("I: "):
            text = line[3:].strip().rstrip(".").rstrip()
            if text.startswith(("downloading", "extracting", "installing", "cleaning",
                                "running", "preparing", "creating", "success")):  # fmt: skip
                self.phase = text.split(" in ", 1)[0]
                return True
            return False
        if re.match(r"^Get:\d+ ", line):
            self.downloaded += 1
            return True
        if line.startswith("Unpacking "):
            self.unpacked += 1
            return True
        if line.startswith("Setting up "):
            self.configured += 1
            return True
        return False

    def line(self, elapsed: float) -> str:
        minutes, seconds = divmod(int(elapsed), 60)
        counts = f"{self.downloaded} downloaded, {self.unpacked} unpacked, {self.configured} set up"
        return f"rootfs: {self.phase} · {counts} · {minutes}m{seconds:02d}s"
