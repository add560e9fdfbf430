"""`python -m dumpbed ...`: the CLI, for places with a venv's python but no script on PATH
(a prepared remote host, docs/nightly.md)."""
import sys

from dumpbed.cli import main

sys.exit(main())
