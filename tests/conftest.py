import os
from pathlib import Path

import pytest

# No hub lookups in tests: a hub id would cost ~28 s of DNS retries before failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEWMM_DATA", REPO.parent / "shared" / "data"))


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
