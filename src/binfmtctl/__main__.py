from binfmtctl.cli import run

run()
