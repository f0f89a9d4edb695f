"""Every flag of every fewmm command line has help text that shows its default, and the four
commands that run models share one ``--device`` default (auto)."""

import argparse

import pytest

from fewmm.clihelp import help_text


def _parsers():
    from fewmm.adapt.cli import build_parser as adapt
    from fewmm.bench import backbone, fusion, merge, plot, plot_fusion, report, speed_report, transfer
    from fewmm.bench.cli import build_parser as bench
    from fewmm.data.__main__ import build_parser as data
    from fewmm.distributed import build_parser as cache_cli
    from fewmm.paper.__main__ import build_parser as paper

    return {"fewmm.bench": bench(), "fewmm.bench.fusion": fusion.build_parser(), "fewmm.bench.backbone": backbone.build_parser(),
            "fewmm.adapt": adapt(), "fewmm.bench.report": report.build_parser(), "fewmm.bench.plot": plot.build_parser(),
            "fewmm.bench.plot_fusion": plot_fusion.build_parser(), "fewmm.bench.speed_report": speed_report.build_parser(),
            "fewmm.data": data(), "fewmm.bench.transfer": transfer.build_parser(), "fewmm.bench.merge": merge.build_parser(),
            "fewmm.cache": cache_cli(), "fewmm.paper": paper()}


def _walk(name, parser):
    """(command name, parser, action) for every action, subcommands included."""
    for action in parser._actions:  # argparse keeps no public list of actions
        if isinstance(action, argparse._SubParsersAction):
            for sub, sp in action.choices.items():
                yield from _walk(f"{name} {sub}", sp)
        else:
            yield name, parser, action


ACTIONS = [(n, p, a) for name, parser in _parsers().items() for n, p, a in _walk(name, parser)
           if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("cmd, parser, action", ACTIONS, ids=[f"{n} {a.dest}" for n, _, a in ACTIONS])
def test_every_flag_has_help_showing_its_default(cmd, parser, action):
    assert action.help and action.help.strip(), f"{cmd}: {action.option_strings or action.dest} has no help text"
    if action.option_strings and not action.required:
        shown = help_text(action) % {**vars(action), "prog": parser.prog}
        assert "default" in shown.lower(), f"{cmd} {action.option_strings[0]}: help does not show its default: {shown!r}"
        assert isinstance(parser.formatter_class(parser.prog), argparse.HelpFormatter)
        assert parser.formatter_class.__name__ == "HelpFormatter" and parser.formatter_class.__module__ == "fewmm.clihelp"


def test_the_walk_covers_the_commands():
    cmds = {n for n, _, _ in ACTIONS}
    assert {"fewmm.bench", "fewmm.bench.fusion", "fewmm.bench.backbone", "fewmm.adapt fit", "fewmm.adapt predict",
            "fewmm.adapt eval", "fewmm.data export", "fewmm.bench.plot", "fewmm.bench.plot_fusion"} <= cmds
    assert len(ACTIONS) > 90


@pytest.mark.parametrize("cmd", ["fewmm.bench", "fewmm.bench.fusion", "fewmm.bench.backbone", "fewmm.adapt fit",
                                 "fewmm.adapt predict", "fewmm.adapt eval"])
def test_one_device_default_auto(cmd):
    dev = [a for n, _, a in ACTIONS if n == cmd and a.dest == "device"]
    assert len(dev) == 1 and dev[0].default == "auto"
    assert dev[0].type("cuda:1") == "cuda:1" and dev[0].type("CPU") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match="expected auto, cpu, cuda or cuda:N, got 'gpu'"):
        dev[0].type("gpu")


def test_help_formatter_wording():
    p = argparse.ArgumentParser()
    a = p.add_argument("--x", type=int, default=3, help="a number")
    b = p.add_argument("--flag", action="store_true", help="a switch")
    c = p.add_argument("--y", help="a name (default: the data set's)")
    assert help_text(a) == "a number (default: %(default)s)"
    assert help_text(b) == "a switch (default: off)"
    assert help_text(c) == "a name (default: the data set's)"
