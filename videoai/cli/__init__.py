"""The `videoai` command line: one subcommand per job, each a thin call into the library."""
from videoai.cli.main import main

__all__ = ["main"]
