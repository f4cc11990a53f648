"""binfmtctl: foreign-architecture programs through binfmt_misc and QEMU, done right.

``__version__`` is the one place the version is written: pyproject.toml reads it
(setuptools dynamic version) and ``binfmtctl --version`` prints it without the
cost of importlib.metadata.

The names in ``__all__`` are the library's public API. They are loaded on
first use (module ``__getattr__``), so ``import binfmtctl`` stays as cheap as
reading this file: the CLI's start-up pays only for the verb it runs.
"""

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    # the catalog and the kernel's entry format
    "Arch": "binfmtctl.arch",
    "resolve": "binfmtctl.arch",
    "Entry": "binfmtctl.entry",
    "Handler": "binfmtctl.entry",
    # one binfmt_misc instance
    "Instance": "binfmtctl.instance",
    "Snapshot": "binfmtctl.instance",
    # where configuration lives and how entries are kept across reboots
    "Layout": "binfmtctl.persist",
    "SystemdStore": "binfmtctl.persist",
    "BinfmtsStore": "binfmtctl.persist",
    # running foreign programs in a private instance (rootless)
    "Sandbox": "binfmtctl.sandbox",
    "run": "binfmtctl.sandbox",
    "RunOptions": "binfmtctl.rootless",
    "call": "binfmtctl.rootless",
    "exec_command": "binfmtctl.rootless",
    # every error binfmtctl raises
    "BinfmtError": "binfmtctl.errors",
}
# use-cases, one module each: install.install/uninstall, apply.apply_files,
# export.export, switch.switch, boot_report.describe, plan.plan_install,
# find.find, diagnose.diagnose (why), scan.scan, prove.prove (test)
_MODULES = (
    "apply",
    "boot_report",
    "diagnose",
    "export",
    "find",
    "install",
    "plan",
    "prove",
    "scan",
    "switch",
)

__all__ = [
    "Arch",
    "BinfmtError",
    "BinfmtsStore",
    "Entry",
    "Handler",
    "Instance",
    "Layout",
    "RunOptions",
    "Sandbox",
    "Snapshot",
    "SystemdStore",
    "__version__",
    "apply",
    "boot_report",
    "call",
    "diagnose",
    "exec_command",
    "export",
    "find",
    "install",
    "plan",
    "prove",
    "resolve",
    "run",
    "scan",
    "switch",
]
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from binfmtctl import (
        apply,
        boot_report,
        diagnose,
        export,
        find,
        install,
        plan,
        prove,
        scan,
        switch,
    )
    from binfmtctl.arch import Arch, resolve
    from binfmtctl.entry import Entry, Handler
    from binfmtctl.errors import BinfmtError
    from binfmtctl.instance import Instance, Snapshot
    from binfmtctl.persist import BinfmtsStore, Layout, SystemdStore
    from binfmtctl.rootless import RunOptions, call, exec_command
    from binfmtctl.sandbox import Sandbox, run


# Not seen by type checkers: they read the imports above, so a misspelt name is an error.
if not TYPE_CHECKING:
    import sys

    def __getattr__(name: str) -> object:
        # `from binfmtctl import signals` asks here first: refuse before importing anything
        if name not in _EXPORTS and name not in _MODULES:
            raise AttributeError(f"module 'binfmtctl' has no attribute {name!r}")
        # __import__ and sys.modules, not importlib (start-up: `from binfmtctl import
        # install` in the CLI comes here too)
        module = _EXPORTS.get(name, f"binfmtctl.{name}")
        __import__(module)
        value = sys.modules[module]
        if name in _EXPORTS:
            value = getattr(value, name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(__all__)
