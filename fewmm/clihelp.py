"""Shared command-line conventions of fewmm's CLIs.

* :class:`HelpFormatter`: every flag's help shows its default (argparse's
  ``ArgumentDefaultsHelpFormatter`` rule, worded for flags whose default is "off" or computed),
  and the description keeps its line breaks.
* :func:`add_device_argument`: one ``--device`` flag, default ``auto`` (CUDA when available, else
  CPU), for ``python -m fewmm.bench``, ``fewmm.bench.fusion``, ``fewmm.bench.backbone`` and
  ``fewmm.adapt``.
* :func:`sigterm_as_interrupt`: inside it, SIGTERM (plain ``kill``, ``timeout``, a Slurm
  walltime) raises :class:`KeyboardInterrupt` like Ctrl-C, so a CLI stops the same clean way
  (encoded feature chunks and measured rows kept, one line, exit 130). Entered by the CLI entry
  points only, never on import; the previous handler comes back on exit.
* :func:`interrupted_message`: that one line, saying what was kept.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEVICE_HELP = "torch device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


def help_text(action: argparse.Action) -> str:
    """The help of ``action`` with its default appended, unless it already says it.

    Flags (``store_true``) show ``(default: off)``; a default of None must be explained in the
    help itself (it names what is used instead), so nothing is appended then.
    """
    h = action.help or ""
    if h is argparse.SUPPRESS or "default" in h.lower() or not action.option_strings:
        return h
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # argparse's own classes
        return h + f" (default: {'off' if action.default is False else 'on'})"
    if action.default is None or action.default is argparse.SUPPRESS:
        return h
    if isinstance(action.default, list) and not action.default:
        return h + " (default: none)"
    return h + " (default: %(default)s)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and shows every flag's default (see :func:`help_text`)."""

    def _get_help_string(self, action):  # the documented hook of argparse's formatters
        return help_text(action)


def device_type(value: str) -> str:
    """``--device`` values: auto, cpu, cuda or cuda:N."""
    v = value.strip().lower()
    if v in DEVICE_CHOICES or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")


def add_device_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """Add ``--device`` (default ``auto``); resolve it with :func:`fewmm.encoders.resolve_device`."""
    return parser.add_argument("--device", default="auto", type=device_type, help=DEVICE_HELP)


def seed_type(value: str) -> int:
    """argparse ``type`` of ``--seed`` / ``--split-seed``: an int >= 0 (numpy's generators refuse
    negative seeds deep inside; this says so at parsing, naming the flag)."""
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (numpy seeds are non-negative), got {v}")
    return v


def check_unique(values, flag: str) -> None:
    """Raise ``ValueError`` naming ``flag`` when ``values`` (a parsed comma-separated list, e.g.
    ``--shots 1,1`` or ``--methods protonet,protonet``) repeats an entry: a repeated setting would
    run twice and be written twice into the results."""
    seen, dup = set(), []
    for v in values:
        if v in seen and v not in dup:
            dup.append(v)
        seen.add(v)
    if dup:
        raise ValueError(f"{flag} lists {', '.join(map(str, dup))} more than once: give each value once")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` (as SIGINT does).

    Only from the main thread (signal handlers can only be set there; elsewhere it does nothing).
    The previous SIGTERM handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def interrupted_message(exc: BaseException, kept: str = "the rows measured so far (if any) are in the output folder") -> str:
    """The one line a CLI prints when interrupted (Ctrl-C or SIGTERM).

    Names the signal, what ``kept`` says, and the feature-cache parts saved by
    :func:`fewmm.cache.embed_table` when the interruption came during encoding (the items saved
    and the folder; the next run resumes after them). Says nothing of the cache when nothing was
    saved.
    """
    from .cache import saved_parts

    how = str(exc) if str(exc).startswith("signal ") else "Ctrl-C"
    msg = f"interrupted ({how}); {kept}"
    saved = saved_parts(exc)
    if saved:
        msg += (f"; {saved['items']} item(s) of {saved['table']} x {saved['encoder']} encoded so far are saved in the "
                f"feature cache ({saved['parts']}): the next run resumes the encoding after them")
    return msg


def run_interruptible(main, argv, kept: str) -> int:
    """Run a CLI's ``main(argv)`` with SIGTERM turned into Ctrl-C; an interrupt prints one line
    (:func:`interrupted_message` with ``kept``, what the run keeps) and returns exit status 130."""
    import sys

    with sigterm_as_interrupt():
        try:
            return main(argv)
        except KeyboardInterrupt as e:
            print(interrupted_message(e, kept), file=sys.stderr)
            return 130
