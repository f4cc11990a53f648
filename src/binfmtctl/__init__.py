"""binfmtctl: foreign-architecture programs through binfmt_misc and QEMU, done right.

``__version__`` is the one place the version is written: pyproject.toml reads it
(setuptools dynamic version) and ``binfmtctl --version`` prints it without the
cost of importlib.metadata.
"""

__version__ = "0.1.0"
