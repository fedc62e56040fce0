"""The `crm-kpi` command of the Python package: the command line, run in this process."""

import signal
import sys

from ._crm_kpi import cli_main


def main() -> None:
    # Ctrl-C ends the command at once, as it does the binary (Python's handler would only set a
    # flag that the engine never looks at).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(cli_main(["crm-kpi", *sys.argv[1:]]))
