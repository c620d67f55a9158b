"""The `refimpl` command line: every command takes its options and positionals in any order
(issue 21: `refimpl certify IMPL --model M --weights W IMAGE` was "unrecognized arguments")."""

import argparse

import pytest

from refimpl.cli import COMMANDS, build_parser, main

PARSER = build_parser()
SUBPARSERS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices

# a valid value for each positional, by dest (lists get two)
VALUES = {"model": "resnet-50", "url": "http://127.0.0.1:1", "impl": "torchvision:resnet50"}


def positionals(name):
    out = []
    for a in SUBPARSERS[name]._get_positional_actions():
        n = 2 if a.nargs in ("+", "*") else 1
        out.append((a, [VALUES.get(a.dest, f"{a.dest}{k}.png") for k in range(n)]))
    return out


def required_options(name):
    """A required option (or --model, which every loading command takes) with a valid value."""
    opts = []
    for a in SUBPARSERS[name]._get_optional_actions():
        if a.dest == "model" or a.required:
            opts += [a.option_strings[-1], VALUES.get(a.dest, "x.json")]
    if any(a.dest == "json" for a in SUBPARSERS[name]._actions):
        opts.append("--json")
    return opts


@pytest.mark.parametrize("name", COMMANDS)
def test_options_and_positionals_in_any_order(name):
    pos = [v for _, values in positionals(name) for v in values]
    opts = required_options(name)
    first = vars(PARSER.parse_args([name, *pos, *opts]))
    last = vars(PARSER.parse_args([name, *opts, *pos]))
    assert first == last
    if len(pos) > 1 and opts:  # an option between the positionals
        middle = vars(PARSER.parse_args([name, pos[0], *opts, *pos[1:]]))
        assert middle == first
    for action, values in positionals(name):
        got = first[action.dest]
        assert (got if isinstance(got, list) else [got])[: len(values)] != [], action.dest


LIST_COMMANDS = [n for n in COMMANDS if any(a.nargs in ("+", "*") for a, _ in positionals(n))]


def test_every_command_with_a_list_positional_is_tested():
    assert {"certify", "check-endpoint", "golden"} <= set(LIST_COMMANDS)


@pytest.mark.parametrize("name", LIST_COMMANDS)
def test_a_list_positional_after_options(name):
    """The documented order: the list positional after every option."""
    lists = [(a, v) for a, v in positionals(name) if a.nargs in ("+", "*")]
    action, values = lists[0]
    scalars = [v[0] for a, v in positionals(name) if a.nargs not in ("+", "*")]
    args = PARSER.parse_args([name, *scalars, *required_options(name), *values])
    assert getattr(args, action.dest) == values


def test_certify_documented_order():
    args = PARSER.parse_args(["certify", "torchvision:resnet50", "--model", "resnet-50", "--weights", "W", "a.png", "b.png"])
    assert args.impl == "torchvision:resnet50" and args.images == ["a.png", "b.png"] and args.weights == "W"


def test_check_endpoint_documented_order():
    args = PARSER.parse_args(["check-endpoint", "http://h:1", "--model", "resnet-50", "a.png", "--json", "b.png"])
    assert args.url == "http://h:1" and args.images == ["a.png", "b.png"] and args.json


def test_usage_errors_still_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["certify"])
    assert e.value.code == 2 and "required: IMPL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["classify", "a.png", "--no-such-option"])
    assert e.value.code == 2 and "unrecognized arguments: --no-such-option" in capsys.readouterr().err


# --- certify: an implementation that raises is a usage error (exit 2), not a traceback ------------

RAISING = {
    "import": "raise RuntimeError('cannot import the port')\n",
    "factory": "def make(weights):\n    raise ValueError('no checkpoint in ' + 'here')\n",
    "forward": ("import torch\n\nclass Port(torch.nn.Module):\n    def forward(self, x):\n"
                "        raise IndexError('index 7 is out of bounds\\nfor dimension 0')\n\n"
                "def make(weights):\n    return Port()\n"),
}


@pytest.mark.parametrize("where", sorted(RAISING))
def test_certify_torch_factory_that_raises_exits_2(where, resnet50_small_dir, tmp_path, capsys):
    from pathlib import Path

    port = tmp_path / "port.py"
    port.write_text(RAISING[where])
    cat = Path(__file__).parent.parent / "examples" / "cat.png"
    code = main(["certify", f"torch:{port}:make", "--model", "resnet-50", "--weights", str(resnet50_small_dir), str(cat)])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if not x.startswith("[")]  # progress lines
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("refimpl certify: AdapterError: torch:"), err
    assert f"{port}:make" in lines[0] and "Traceback" not in err
    expected = {"import": "RuntimeError: cannot import the port", "factory": "ValueError: no checkpoint in here",
                "forward": "IndexError: for dimension 0"}[where]
    assert expected in lines[0], lines[0]
