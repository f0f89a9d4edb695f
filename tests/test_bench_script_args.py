"""Bad arguments to the benchmark scripts stop with a clear message before any timing (QA findings
7 and 8): ``benchmarks/maml_speed.py`` and ``benchmarks/episode_throughput.py``. No timing here:
every call below must exit in argument checking (or, for ``--ways 1000``, right after the
synthetic features are made)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name):
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))  # the scripts import their sibling modules (interleaved)
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def maml_speed():
    return _load("maml_speed")


@pytest.fixture(scope="module")
def throughput():
    return _load("episode_throughput")


def _exits(fn, argv, capsys):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    err = capsys.readouterr().err
    assert e.value.code != 0 and "Traceback" not in err
    return err + (e.value.code if isinstance(e.value.code, str) else "")


@pytest.mark.parametrize("argv, message", [
    (["--head", "gmu", "--methods", "floor"], "--head gmu leaves no method: gram and floor apply to the mlp head only"),
    (["--head", "gmu", "--methods", "gram,floor"], "--head gmu leaves no method"),
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),
    (["--eval-episodes", "0"], "--eval-episodes must be >= 1, got 0"),
    (["--inner-steps", "0"], "--inner-steps: expected comma-separated positive integers such as 1,5, got '0'"),
    (["--inner-steps", "1,-2"], "--inner-steps: expected comma-separated positive integers such as 1,5, got '1,-2'"),
    (["--train-steps", "-1"], "--train-steps must be >= 0 (0 skips the accuracy run), got -1"),
    (["--json", "/proc/fewmm-x.json"], "--json /proc/fewmm-x.json: cannot write in /proc"),
    (["--inner-steps", "1,x"], "--inner-steps: expected comma-separated positive integers such as 1,5, got '1,x'"),
    (["--inner-lr", "-1"], "--inner-lr must be >= 0 (a step size), got -1.0"),
    (["--processes", "0"], "--processes must be >= 1, got 0"),
    (["--dim", "3", "--head", "gmu"], "--dim must be >= 16 for the synthetic features (rank-16 class means), got 3"),
    (["--features", "/nonexistent.safetensors"], "--features /nonexistent.safetensors: no such file"),
    (["--device", "bogus"], "--device 'bogus': not a torch device"),
    (["--way", "100", "--no-memory", "--train-steps", "0"],
     "base classes: 100-way episodes need 100 classes with >= 16 items, only 64 have (--way / --shot / --query)"),
    (["--shot", "50", "--no-memory", "--train-steps", "0"], "50-shot 15-query episodes need 65 items per class"),
])
def test_maml_speed_bad_arguments(maml_speed, capsys, argv, message):
    err = _exits(maml_speed.main, argv, capsys)
    assert message in err and "--shots" not in err  # this script's flags are --shot / --query


@pytest.mark.parametrize("argv, message", [
    (["--chunk-size", "0"], "--chunk-size must be >= 1 episodes (or left out for fewmm's own choice), got 0"),
    (["--chunk-size", "-3"], "--chunk-size must be >= 1 episodes"),
    (["--loop-episodes", "0"], "--loop-episodes must be >= 1, got 0"),
    (["--episodes", "0"], "--episodes must be >= 1, got 0"),
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),
    (["--processes", "0"], "--processes must be >= 1, got 0"),
    (["--device", "bogus"], "--device 'bogus': not a torch device"),
    (["--json", "/proc/fewmm-x.json"], "--json /proc/fewmm-x.json: cannot write in /proc"),
    (["--json", "/tmp"], "--json /tmp: is a folder; expected a file path"),
    (["--synthetic", "--ways", "1000", "--no-l2l", "--no-compile", "--processes", "2"],
     "episode_throughput.py: error: process 1 of 2 failed (exit status 1); nothing was written"),
    (["--synthetic", "--ways", "1000", "--no-l2l", "--no-compile"],
     "episode_throughput.py: error: synthetic(659x20, 1280-d): "),
])
def test_episode_throughput_bad_arguments(throughput, capsys, argv, message):
    err = _exits(throughput.main, argv, capsys)
    assert message in err
    if "--ways" in argv and "--processes" not in argv:  # a child process's own message goes to the terminal, not capsys
        assert "1000" in err and "(--ways / --shots / --queries)" in err
