"""``python -m rollrisk``: the same command line as the ``rollrisk`` script.

The demo runs each stage this way (``sys.executable -m rollrisk ...``), so a stage runs with
the interpreter and installation of the demo itself, whatever ``rollrisk`` is on the PATH.
"""

import sys

from rollrisk.cli import main

if __name__ == "__main__":
    sys.exit(main())
