"""Entry point of the `videoai` console script: builds the parser and turns bad input into one-line errors."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module in videoai.cli that defines `add_parser(subparsers)`; imported lazily so
# `videoai --help` stays fast and a subcommand only pays for the libraries it uses.
SUBCOMMANDS = {
    "demo": "videoai.cli.demo",
    "app": "videoai.cli.app",
    "generate": "videoai.cli.generate",
    "tracks": "videoai.cli.tracks",
    "shots": "videoai.cli.shots",
    "tag": "videoai.cli.tag",
    "embed": "videoai.cli.embed",
    "index": "videoai.cli.index",
    "recommend": "videoai.cli.recommend",
}


class CLIError(ValueError):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoai", description="Video AI: generate, understand, recommend.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("videoai: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, OSError, RuntimeError) as error:
        if args.debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"videoai {args.command}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
