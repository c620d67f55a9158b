"""`refimpl` command line. Each subcommand lives in refimpl/commands/<name>.py and defines
`register(subparsers)`, which adds its parser and sets `func(args) -> exit code`."""

import argparse
import importlib
import sys

from . import __version__
from .errors import RefimplError

# Order here is the order of `refimpl --help`.
COMMANDS = ["classify", "detect", "summary", "trace", "compare", "run", "serve", "check-endpoint", "golden", "audit", "audit-dir", "bench"]


def build_parser():
    parser = argparse.ArgumentParser(prog="refimpl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"refimpl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"refimpl.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except RefimplError as e:
        print(f"refimpl {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `refimpl ... | head`: the reader left; that is not an error. Point stdout at devnull so
        # the interpreter's final flush does not complain either.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, OSError) as e:  # bad option values, unreadable files
        print(f"refimpl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
