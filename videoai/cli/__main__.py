"""`python -m videoai.cli` runs the `videoai` command."""
import sys

from videoai.cli.main import main

sys.exit(main())
