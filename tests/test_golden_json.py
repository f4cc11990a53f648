"""Golden files of every verb's ``--json`` output: the JSON contract, byte for byte.

Each case runs the real ``binfmtctl`` in a private binfmt_misc instance (real
kernel, real QEMU, Debian's foreign busybox) and compares its envelope with
tests/golden/CASE.json twice: as parsed JSON, and as the text
``json.dumps(..., indent=2)`` makes of it, so a changed value, a renamed,
added or removed key and a change of key order all fail. The exit code is
part of each case here (not of the golden file) and is never regenerated.

Cases that can share an instance are grouped: a group opens one sandbox, runs
its setup steps and cases in order, and every case of it is its own test.

Only what differs between runs and machines is normalised, all of it in
:func:`normalise` (see there). ``BINFMTCTL_UPDATE_GOLDEN=1`` rewrites the
golden files from the current output (tests/golden/README says when that is
right); without it a missing golden file fails.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from binfmtctl import binfmt_d, host, sandbox
from binfmtctl.arch import Profile, resolve
from binfmtctl.native import native_arches
from binfmtctl.plan import build_entry
from conftest import _NO_SANDBOX, ROOT, foreign_busybox, qemu

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("BINFMTCTL_UPDATE_GOLDEN") == "1"
MP = "/proc/sys/fs/binfmt_misc"
USER = "binfmtctl-test"
SYSTEM_PYTHON = "/usr/bin/python3"
# The arch the golden files were recorded on. Cases use arches foreign to the
# usual hosts (s390x, ppc64le, MIPS, RISC-V, alpha, m68k) wherever the verb
# allows; a case marked host_dependent cannot (it refuses the host's own arch,
# or finds aarch64 and i386 programs, native on some hosts): it is checked
# only on an x86_64 host, and skipped, saying why, on another.
RECORDED_ON = "x86_64"


# -- normalisation: everything that may differ between runs and machines ---------

TMP = "<TMP>"
PROBE_DIR = re.compile(r"(binfmtctl-probes-)[A-Za-z0-9_]+")  # tempfile.mkdtemp's suffix
SECONDS = "<SECONDS>"
HOST_MACHINE, HOST_ARCH, HOST_NATIVE = "<HOST_MACHINE>", "<HOST_ARCH>", "<HOST_NATIVE>"


def normalise(command: str, value: Any, tmp: str) -> Any:
    """The envelope with what varies between runs and machines replaced by placeholders.

    The one place such rules live (regenerate after changing it):

    - the case's temporary directory, wherever it occurs in a string -> ``<TMP>``;
    - the random part of ``test``'s probe directory, ``binfmtctl-probes-XXXX``
      -> ``binfmtctl-probes-<RANDOM>`` (its place is pinned: TEST_ENV);
    - every number under a key ``seconds`` (probe and run durations) -> ``<SECONDS>``;
    - ``status``: ``data.host`` (this machine's ``uname -m``, its arch and the
      arches it runs natively) -> ``<HOST_MACHINE>``, ``<HOST_ARCH>``,
      ``<HOST_NATIVE>``, after checking they are what :mod:`binfmtctl.host`
      says (so the values are derived, not ignored);
    - ``arches``: each row's ``native`` is checked against the same
      host facts and kept as the placeholder ``<HOST_NATIVE>`` when true.

    Nothing else is touched. Emulator paths stay /usr/bin/qemu-*-static
    (the suite needs Debian's qemu-user-static there); ``arches`` lists which
    emulators are found, so it changes if that package gains or loses one.
    """
    out = _walk(value, tmp)
    data = out.get("data")
    if command == "status" and isinstance(data, dict) and "host" in data:
        data["host"] = _host_block(data["host"])
    if command == "arches" and isinstance(data, dict):
        native = {a.name for a in native_arches()}
        for row in data["arches"]:
            assert row["native"] is (row["name"] in native), row["name"]
            if row["native"]:
                row["native"] = HOST_NATIVE
    return out


def _walk(value: Any, tmp: str, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, tmp, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, tmp) for v in value]
    if isinstance(value, str):
        return PROBE_DIR.sub(r"\1<RANDOM>", value.replace(tmp, TMP))
    if key == "seconds" and isinstance(value, int | float) and not isinstance(value, bool):
        return SECONDS
    return value


def _host_block(block: dict[str, Any]) -> dict[str, Any]:
    me = host.host_arch()
    expected = {
        "machine": host.machine(),
        "arch": me.name if me else None,
        "native": [a.name for a in native_arches()],
    }
    assert block == expected, f"status says the host is {block}, binfmtctl.host {expected}"
    return {"machine": HOST_MACHINE, "arch": HOST_ARCH, "native": HOST_NATIVE}


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False) + "\n"


# test: probes are written to $XDG_RUNTIME_DIR (else /dev/shm) in a directory
# with a random name; pinning the first makes the place the same everywhere.
TEST_ENV = (("XDG_RUNTIME_DIR", "{tmp}"),)


# -- cases ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One ``binfmtctl ... --json`` run compared with tests/golden/NAME.json.

    ``{tmp}`` in argv, stdin and env is the group's temporary directory.
    """

    name: str
    argv: tuple[str, ...]
    exit: int
    stdin: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    host_dependent: bool = False


Setup = Callable[[sandbox.Sandbox, Path], None]


@dataclass(frozen=True)
class Group:
    """Steps sharing one private instance, run in order: a Case or a setup function."""

    name: str
    steps: tuple[Case | Setup, ...]
    as_user: bool = False  # cases run as the unprivileged binfmtctl-test user
    full_ids: bool = False  # the sandbox maps uids 0..65535 (needed for as_user)


def case(name: str, command: str, exit: int = 0, **kw: Any) -> Case:
    """A case: ``command`` is split as a shell would; ``--json`` goes right after the
    verb, before any word that may be the command's (``why CMD ARGS``, ``run -- CMD``)."""
    verb, *rest = shlex.split(command)
    return Case(name, (verb, "--json", *rest), exit, **kw)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _register(line: str) -> Callable[[], None]:
    def write() -> None:
        with open(f"{MP}/register", "w") as fh:
            fh.write(line)

    return write


def _entry_line(arch: str, interpreter: str, flags: str = "F") -> str:
    return str(build_entry(resolve(arch), interpreter, flags, Profile.QEMU))


# Status: engines are looked up on PATH and at DOCKER_HOST. A PATH holding only
# two empty stand-in executables (mocked: a real docker or podman cannot be
# assumed on every machine; status only looks them up, never runs them) and a
# DOCKER_HOST socket that does not exist give the same engines on every machine.
# XDG_RUNTIME_DIR: the per-boot answers (native arches, argv[0] verdicts) are
# kept there, so status sees none that another run of this boot left behind.
STATUS_ENV = (
    ("PATH", "{tmp}/bin"),
    ("DOCKER_HOST", "unix://{tmp}/docker.sock"),
    ("XDG_RUNTIME_DIR", "{tmp}"),
)


def _escaped(hex_bytes: str) -> str:
    """``7f45`` as binfmt-support writes it: ``\\x7f\\x45``."""
    return "".join(f"\\x{hex_bytes[i : i + 2]}" for i in range(0, len(hex_bytes), 2))


def _status_files(box: sandbox.Sandbox, tmp: Path) -> None:
    for engine in ("docker", "podman"):
        _write(tmp / "bin" / engine, "#!/bin/sh\nexit 1\n", 0o755)
    (tmp / "empty-root").mkdir()
    # A root whose binfmt.d holds: ours (marked), a packaged one overridden by
    # /etc, a foreign E entry and a broken line.
    arm = _entry_line("arm64", "/usr/bin/qemu-aarch64-static")
    packaged_arm = _entry_line("arm64", "/usr/bin/qemu-aarch64-static", "")
    s390x = _entry_line("s390x", "/usr/bin/qemu-s390x-static")
    _write(tmp / "root/etc/binfmt.d/qemu-aarch64.conf", f"{binfmt_d.HEADER.decode()}{arm}\n")
    _write(tmp / "root/usr/lib/binfmt.d/qemu-aarch64.conf", f"{packaged_arm}\n")
    _write(tmp / "root/usr/lib/binfmt.d/qemu-s390x.conf", f"{s390x}\n")

    # A distro package's record of s390x in update-binfmts' admin directory (one
    # value a line: package, type, offset, magic, mask, interpreter, detector,
    # credentials, preserve, fix_binary), as Debian's qemu-user-static leaves it.
    magic, mask = "7f454c4602020100000000000000000000020016", "ff" * 7 + "fc" + "ff" * 9 + "feffff"
    record = ["qemu-user-static", "magic", "0", _escaped(magic), _escaped(mask),
              "/usr/libexec/qemu-binfmt/s390x-binfmt-P", "", "no", "yes", "yes"]  # fmt: skip
    _write(tmp / "root/var/lib/binfmts/qemu-s390x", "\n".join(record) + "\n")
    # s390x's emulator is in the root (boot registers it), aarch64's is not.
    (tmp / "root/usr/bin").mkdir(parents=True)
    shutil.copy2(qemu("qemu-s390x"), tmp / "root/usr/bin/qemu-s390x-static")
    _write(tmp / "root/usr/lib/binfmt.d/zz-foreign.conf", ":golden-ext:E::gold::/bin/sh:\n")
    _write(tmp / "root/etc/binfmt.d/broken.conf", ":broken:M::\\x7fELF\n")


def _status_entries(box: sandbox.Sandbox, tmp: Path) -> None:
    """A QEMU entry, a disabled one, a foreign E entry and a foreign M entry."""
    box.run(_register(_entry_line("s390x", qemu("qemu-s390x"))))
    box.run(_register(_entry_line("ppc64el", qemu("qemu-ppc64le"))))
    box.run(_register(":golden-ext:E::gold::/bin/sh:"))
    box.run(_register(":golden-magic:M:2:GOLD::/nonexistent/interpreter:"))

    def disable() -> None:
        with open(f"{MP}/qemu-ppc64le", "w") as fh:
            fh.write("0")

    box.run(disable)


STATUS = Group(
    "status",
    (
        _status_files,
        case(
            "status-not-mounted",
            "status --mountpoint {tmp}/nothing-here --root {tmp}/root",
            env=STATUS_ENV,
        ),
        case("status-empty", "status --root {tmp}/empty-root", env=STATUS_ENV),
        _status_entries,
        case("status-entries", "status --root {tmp}/empty-root", env=STATUS_ENV),
        case("status-entries-with-config", "status --root {tmp}/root", env=STATUS_ENV),
        case("status-boot", "status --boot --root {tmp}/root"),
        case("status-boot-empty-root", "status --boot --root {tmp}/empty-root"),
    ),
)


def _install_setup(box: sandbox.Sandbox, tmp: Path) -> None:
    (tmp / "no-emulators").mkdir()
    (tmp / "root").mkdir()
    _write(tmp / "not-a-dir", "a file where a directory should be\n")


def _read_only_mount(box: sandbox.Sandbox, tmp: Path) -> None:
    """A second mount of this instance, remounted read-only (the first stays writable)."""
    (tmp / "ro").mkdir()

    def mount() -> None:
        for argv in (
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(tmp / "ro")],
            ["mount", "-o", "remount,bind,ro", str(tmp / "ro")],
        ):
            subprocess.run(argv, check=True, capture_output=True)

    box.run(mount)


INSTALL = Group(
    "install",
    (
        _install_setup,
        case("arches", "arches"),
        case("install-dry-run", "install mips64el --dry-run"),
        case("install-fresh", "install s390x ppc64el"),
        case("install-already-there", "install s390x"),
        case("install-one-new-one-there", "install s390x mips64el"),
        case("arches-some-registered", "arches"),
        case(
            "install-missing-emulator",
            "install mipsel --interpreter-dir {tmp}/no-emulators",
            exit=1,
        ),
        case("install-unknown-arch", "install nosucharch", exit=2),
        case("install-refused-native", f"install {RECORDED_ON}", exit=1, host_dependent=True),
        case("install-persist", "install riscv64 --persist --root {tmp}/root"),
        case(
            "install-persist-failed-partly-done",
            "install alpha --persist --binfmt-d {tmp}/not-a-dir",
            exit=3,
        ),
        _read_only_mount,
        case("install-read-only-mount", "install m68k --mountpoint {tmp}/ro", exit=1),
        case("uninstall-persist", "uninstall riscv64 --persist --root {tmp}/root"),
        # F alone differs from the default (FP where the emulator keeps argv[0]).
        case("install-replace-flags", "install s390x --flags F --replace"),
        case("install-kept-differing", "install s390x"),
        case("uninstall-dry-run", "uninstall s390x --dry-run"),
        case("uninstall-one", "uninstall s390x"),
        case("uninstall-not-registered", "uninstall s390x"),
        lambda box, tmp: box.run(_register(":golden-ext:E::gold::/bin/sh:")),
        case("uninstall-all", "uninstall --all"),
        case("uninstall-all-nothing-left", "uninstall --all"),
    ),
)


def _entries_setup(box: sandbox.Sandbox, tmp: Path) -> None:
    box.run(_register(_entry_line("s390x", qemu("qemu-s390x"))))
    box.run(_register(_entry_line("ppc64el", qemu("qemu-ppc64le"))))


ENTRIES = Group(
    "entries",
    (
        _entries_setup,
        case("disable-one", "disable qemu-ppc64le"),
        case("disable-already-disabled", "disable ppc64el"),
        case("enable-one", "enable ppc64el"),
        case("enable-two-by-arch", "enable s390x qemu-ppc64le"),
        case("disable-not-registered", "disable mipsel", exit=1),
        case("enable-unknown-name", "enable no-such-entry", exit=1),
        case("disable-instance", "disable --instance"),
        case("status-instance-disabled", "status --root {tmp}", env=STATUS_ENV),
        case("enable-instance", "enable --instance"),
        case("enable-no-names", "enable", exit=2),
    ),
)

REGISTER_STRING = ":golden:M:2:\\x41B:\\xff\\xdf:/bin/sh:FC"

EXPLAIN = Group(
    "explain",
    (
        _entries_setup,
        case("explain-arch", "explain riscv64"),
        case("explain-arch-seed", "explain s390x --profile seed"),
        case("explain-entry-name", "explain qemu-s390x"),
        case("explain-register-string", f"explain {shlex.quote(REGISTER_STRING)}"),
        case("explain-stdin", "explain -", stdin=f"{REGISTER_STRING}\n"),
        case("explain-bad-register-string", "explain :bad:X::41::/bin/sh:", exit=1),
        case("explain-unknown", "explain nothing-by-this-name", exit=2),
    ),
)

EXPORT = Group(
    "export",
    (
        case("export-register", "export riscv64 s390x"),
        case("export-systemd", "export riscv64 --format systemd"),
        case("export-binfmt-support", "export riscv64 --format binfmt-support"),
        case("export-json", "export riscv64 --format json"),
        case("export-seed-flags", "export s390x --profile seed --flags OCF"),
        case("export-output-dir", "export riscv64 s390x --format systemd -o {tmp}/out"),
        case("export-output-dir-again", "export riscv64 s390x --format systemd -o {tmp}/out"),
        case(
            "export-output-dir-binfmt-support", "export s390x --format binfmt-support -o {tmp}/bs"
        ),
        case("export-output-dir-json", "export s390x --format json -o {tmp}/js"),
        case("export-output-dir-register", "export s390x -o {tmp}/reg"),
        lambda box, tmp: _write(tmp / "admin/qemu-s390x.conf", "# the administrator's\n"),
        case(
            "export-output-dir-foreign-file",
            "export riscv64 s390x --format systemd -o {tmp}/admin",
            exit=3,
        ),
        case("export-unknown-arch", "export nosucharch", exit=2),
    ),
)


def _apply_files(box: sandbox.Sandbox, tmp: Path) -> None:
    good = "\n".join(
        [
            "# two handlers",
            _entry_line("s390x", qemu("qemu-s390x")),
            _entry_line("mips64el", qemu("qemu-mips64el")),
            "",
        ]
    )
    _write(tmp / "good.conf", good)
    bad = "\n".join(
        [
            _entry_line("ppc64el", qemu("qemu-ppc64le")),
            ":broken:M::\\x7fELF",
            ":also-broken:Q::41::/bin/sh:",
            "",
        ]
    )
    _write(tmp / "bad.conf", bad)
    _write(tmp / "root/usr/lib/binfmt.d/qemu-ppc64le.conf", bad.splitlines()[0] + "\n")


APPLY = Group(
    "apply",
    (
        _apply_files,
        case("apply-dry-run", "apply {tmp}/good.conf --dry-run"),
        case("apply-good", "apply {tmp}/good.conf"),
        case("apply-good-again", "apply {tmp}/good.conf"),
        case("apply-bad-line", "apply {tmp}/bad.conf", exit=3),
        case("apply-missing-file", "apply {tmp}/absent.conf", exit=1),
        case("apply-boot-files-of-a-root", "apply --root {tmp}/root --dry-run"),
    ),
)


def _test_setup(box: sandbox.Sandbox, tmp: Path) -> None:
    for arch, stem in (
        ("s390x", "qemu-s390x"),
        ("ppc64el", "qemu-ppc64le"),
        ("mips64el", "qemu-mips64el"),
    ):
        box.run(_register(_entry_line(arch, qemu(stem))))


def _break_mipsel(box: sandbox.Sandbox, tmp: Path) -> None:
    """A mipsel entry whose emulator is s390x's: it runs, and rejects the program."""
    box.run(_register(_entry_line("mipsel", qemu("qemu-s390x"))))


def _missing_interpreter(box: sandbox.Sandbox, tmp: Path) -> None:
    """No F: the kernel looks the interpreter up at each exec, and it is not there."""
    box.run(_register(_entry_line("armhf", "/nonexistent/qemu-arm-static", "")))


TEST = Group(
    "test",
    (
        _test_setup,
        case("test-all-ok", "test", env=TEST_ENV),
        case("test-named-ok", "test s390x ppc64el", env=TEST_ENV),
        case("test-chroot", "test s390x --chroot", env=TEST_ENV),
        case("test-not-registered", "test riscv64", exit=1, env=TEST_ENV),
        case("install-then-test", "install riscv64 --test", env=TEST_ENV),
        _break_mipsel,
        case("test-wrong-emulator", "test s390x mipsel", exit=3, env=TEST_ENV),
        _missing_interpreter,
        case("test-interpreter-missing", "test armhf", exit=1, env=TEST_ENV),
        case("test-bad-timeout", "test --timeout 0", exit=2, env=TEST_ENV),
    ),
)


def _tree(box: sandbox.Sandbox, tmp: Path) -> None:
    """A small aarch64 tree with two i386 programs in it, a script and a text file."""
    tree = tmp / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "usr/bin").mkdir(parents=True)
    arm64 = foreign_busybox("arm64").read_bytes()
    i386 = foreign_busybox("i386").read_bytes()
    for name in ("busybox", "sh", "ls"):
        (tree / "bin" / name).write_bytes(arm64)
        (tree / "bin" / name).chmod(0o755)
    for name in ("x86-tool", "x86-helper"):
        (tree / "usr/bin" / name).write_bytes(i386)
        (tree / "usr/bin" / name).chmod(0o755)
    _write(tree / "usr/bin/script", "#!/bin/sh\necho hi\n", 0o755)
    _write(tree / "README", "not a program\n")
    for arch in ("s390x", "mipsel"):  # busybox picks its applet by its own name
        (tmp / arch).mkdir()
        (tmp / arch / "busybox").write_bytes(foreign_busybox(arch).read_bytes())
        (tmp / arch / "busybox").chmod(0o755)
    box.run(_register(_entry_line("s390x", qemu("qemu-s390x"))))


# why names the PATH it searched: the same one on every machine.
WHY_ENV = (("PATH", "/usr/bin:/bin"),)

DIAGNOSE = Group(
    "diagnose",
    (
        _tree,
        case(
            "find-handled-and-not",
            "find {tmp}/s390x/busybox {tmp}/mipsel/busybox {tmp}/tree/usr/bin/script",
        ),
        case("find-rootfs", "find --rootfs {tmp}/tree /bin/busybox", host_dependent=True),
        case("find-missing-file", "find {tmp}/absent", exit=1),
        case("why-runs", "why {tmp}/s390x/busybox echo hi"),
        case("why-no-handler", "why {tmp}/mipsel/busybox", exit=1),
        case("why-not-found", "why no-such-command-anywhere", exit=1, env=WHY_ENV),
        case("scan-tree", "scan {tmp}/tree", exit=1, host_dependent=True),
        case("scan-not-a-dir", "scan {tmp}/absent", exit=2),
    ),
)

RUN = Group(
    "run",
    (
        _tree,
        case(
            "run-json",
            "run --arch s390x -- {tmp}/s390x/busybox sh -c 'echo out; echo err >&2; exit 3'",
            exit=3,
        ),
        case(
            "run-json-signal",
            "run --arch s390x -- {tmp}/s390x/busybox sh -c 'kill -TERM $$'",
            exit=143,
        ),
        case("run-json-not-found", "run --arch s390x -- {tmp}/absent", exit=127),
        case("run-json-bad-rootfs", "run --rootfs {tmp}/absent -- /bin/sh", exit=2),
        case("usage-error-unknown-verb", "frobnicate", exit=2),
        case("usage-error-bad-option", "status --no-such-option", exit=2),
    ),
)


def _privilege_files(box: sandbox.Sandbox, tmp: Path) -> None:
    tmp.chmod(0o755)
    _write(tmp / "qemu-s390x.conf", f"{_entry_line('s390x', qemu('qemu-s390x'))}\n")
    box.run(_register(_entry_line("ppc64el", qemu("qemu-ppc64le"))))


PRIVILEGES = Group(
    "privileges",
    (
        _privilege_files,
        case("needs-privileges-install", "install s390x", exit=4),
        case("needs-privileges-uninstall", "uninstall ppc64el", exit=4),
        case("needs-privileges-disable", "disable ppc64el", exit=4),
        case("needs-privileges-apply", "apply {tmp}/qemu-s390x.conf", exit=4),
    ),
    as_user=True,
    full_ids=True,
)

GROUPS = (STATUS, INSTALL, ENTRIES, EXPLAIN, EXPORT, APPLY, TEST, DIAGNOSE, RUN, PRIVILEGES)


# -- running ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str
    tmp: str


def _fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


def _user_problem() -> str | None:
    if os.geteuid() != 0:
        return "the unprivileged-user cases need root to create a sandbox with more than one uid"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER}: run scripts/test-deps as root"
    check = [SYSTEM_PYTHON, "-c", "import elftools"]
    if subprocess.run(check, capture_output=True, check=False).returncode != 0:
        return "the distro's python3 lacks pyelftools: run scripts/test-deps"
    return None


def _argv(group: Group, item: Case, tmp: Path) -> list[str]:
    args = [_fill(a, tmp) for a in item.argv]
    if not group.as_user:
        return [sys.executable, "-m", "binfmtctl", *args]
    entry = pwd.getpwnam(USER)
    return [
        "setpriv",
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--clear-groups",
        "--",
        "env",
        f"PYTHONPATH={ROOT / 'src'}",
        "HOME=/",
        SYSTEM_PYTHON,
        "-m",
        "binfmtctl",
        *args,
    ]


def _env(item: Case, tmp: Path) -> dict[str, str] | None:
    if not item.env:
        return None
    return {**os.environ, **{k: _fill(v, tmp) for k, v in item.env}}


def _run_group(group: Group) -> dict[str, Ran]:
    """Open one private instance and run the group's steps in order."""
    if _NO_SANDBOX is not None:
        pytest.skip(f"no private binfmt_misc here: {_NO_SANDBOX}")
    if group.as_user and (problem := _user_problem()):
        pytest.skip(problem)
    out: dict[str, Ran] = {}
    # Not pytest's tmp_path: that is root's alone (mode 0700) and its name
    # changes with the test; binfmtctl-test must be able to read the files.
    tmp = Path(tempfile.mkdtemp(prefix=f"binfmtctl-golden-{group.name}-")).resolve()
    try:
        with sandbox.Sandbox(full_ids=group.full_ids) as box:
            for step in group.steps:
                if not isinstance(step, Case):
                    step(box, tmp)
                    continue
                proc = box.run(
                    subprocess.run,
                    _argv(group, step, tmp),
                    capture_output=True,
                    text=True,
                    input=None if step.stdin is None else _fill(step.stdin, tmp),
                    env=_env(step, tmp),
                    check=False,
                    cwd="/",
                )
                out[step.name] = Ran(proc.returncode, proc.stdout, proc.stderr, str(tmp))
    finally:
        subprocess.run(["rm", "-rf", "--", str(tmp)], check=False)
    return out


_CACHE: dict[str, dict[str, Ran]] = {}


def _outputs(group: Group) -> dict[str, Ran]:
    if group.name not in _CACHE:
        _CACHE[group.name] = _run_group(group)
    return _CACHE[group.name]


CASES = [(g, s) for g in GROUPS for s in g.steps if isinstance(s, Case)]


def test_case_names_are_unique_and_every_golden_file_is_used() -> None:
    names = [c.name for _, c in CASES]
    assert len(names) == len(set(names)), "two cases share a golden file"
    stale = {p.stem for p in GOLDEN.glob("*.json")} - set(names)
    assert not stale, f"golden files no case produces (remove them): {sorted(stale)}"


@pytest.mark.parametrize(("group", "item"), CASES, ids=[c.name for _, c in CASES])
def test_json_output_matches_its_golden_file(group: Group, item: Case) -> None:
    if item.host_dependent and (me := host.host_arch()) and me.name != RECORDED_ON:
        pytest.skip(f"recorded on an {RECORDED_ON} host (natively-run arches differ on {me.name})")
    ran = _outputs(group)[item.name]
    assert ran.returncode == item.exit, f"exit {ran.returncode}\n{ran.stdout}\n{ran.stderr}"
    assert ran.stderr == "", f"--json wrote to stderr: {ran.stderr!r}"
    envelope = json.loads(ran.stdout)
    assert ran.stdout == dumps(envelope), "the output is not json.dumps(indent=2) of itself"
    got = normalise(envelope["command"], envelope, ran.tmp)
    path = GOLDEN / f"{item.name}.json"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(dumps(got))
    assert path.exists(), f"{path} is missing: run with BINFMTCTL_UPDATE_GOLDEN=1 to record it"
    text = path.read_text()
    assert dumps(got) == text  # values and key order (the clearer diff)
    assert got == json.loads(text)


@pytest.fixture(autouse=True, scope="module")
def _forget() -> Iterator[None]:
    yield
    _CACHE.clear()
