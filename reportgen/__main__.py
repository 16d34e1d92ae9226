"""`python -m reportgen` and the `reportgen` console script.

The stop handlers go in before anything else of reportgen is imported: Ctrl-C or SIGTERM while
the command's modules load gives one line and exit 130/143, never a traceback.
"""

import os
import sys

from reportgen.errors import Stopped
from reportgen.stopping import install_stop_handlers, stop_message

install_stop_handlers()

try:
    from reportgen.cli import run
except Stopped as stopped:
    sys.stderr.write(stop_message(stopped) + "\n")
    sys.stderr.flush()
    os._exit(stopped.exit_code)

if __name__ == "__main__":
    run()
