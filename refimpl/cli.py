"""The `refimpl` command: what `refimpl --help` shows, and the dispatch to refimpl/commands/<name>.py
(each defines `register(subparsers)`, which adds its parser and sets `func(args) -> exit code`)."""

import argparse
import importlib
import sys

from refimpl import __version__
from refimpl.errors import RefimplError

ABOUT = """\
refimpl: pure-numpy reference implementations of ResNet-50 (@cf/microsoft/resnet-50) and
DETR-ResNet-50 (@cf/facebook/detr-resnet-50), readable like a textbook and usable as a test oracle:
run the models, serve the hosted API's contract, compare other implementations layer by layer,
and audit answers someone claims."""

# The order and grouping of `refimpl --help`.
COMMAND_GROUPS = (
    ("run the models", ("classify", "detect")),
    ("the hosted API's contract", ("run", "serve", "check-endpoint")),
    ("conformance and audit", ("trace", "compare", "certify", "golden", "audit", "audit-dir", "evaluate", "diagnoses")),
    ("learning", ("summary",)),
    ("performance", ("bench",)),
)
COMMANDS = [name for _, names in COMMAND_GROUPS for name in names]

FOOTER = """\
Every command that takes a model accepts any of its names (refimpl/registry.py). Commands that
compute an answer take --path reference|fast: which code runs is always explicit.
`refimpl COMMAND --help` for a command's options; README.md for the whole story."""


class IntermixedParser(argparse.ArgumentParser):
    """A command's parser that takes options and positionals in any order:
    `refimpl certify IMPL --model M --weights W IMAGE` as well as `refimpl certify IMPL IMAGE
    --model M`. Plain argparse gives a list positional (IMAGE...) only the words before the first
    option, then refuses the rest as "unrecognized arguments"; parse_intermixed_args reads every
    option first and the positionals after. (The top-level parser cannot: it has subparsers.)"""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # parse_known_intermixed_args calls back here for each of its two passes
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser():
    parser = argparse.ArgumentParser(prog="refimpl", description=ABOUT, usage="refimpl [-h] [--version] COMMAND ...",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"refimpl {__version__}")
    # The commands are listed by group in the epilog below, so argparse's flat list is hidden.
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS, prog="refimpl",
                                parser_class=IntermixedParser)
    for name in COMMANDS:
        importlib.import_module(f"refimpl.commands.{name.replace('-', '_')}").register(sub)
    helps = {action.dest: action.help for action in sub._choices_actions}
    width = max(map(len, COMMANDS)) + 2
    lines = []
    for title, names in COMMAND_GROUPS:
        lines.append(f"{title}:")
        lines += [f"  {name:<{width}}{helps.get(name) or ''}" for name in names]
    parser.epilog = "\n".join(lines) + "\n\n" + FOOTER
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
