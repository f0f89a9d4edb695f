"""In CI (CI=true), every optional component must be installed: tests that need an optional
package skip when it is missing, so a broken scripts/setup.sh would otherwise show as skips."""

import importlib
import os

import pytest


@pytest.mark.skipif(not os.environ.get("CI"), reason="only in CI: checks that scripts/setup.sh installed every extra")
@pytest.mark.parametrize("module", ["open_clip", "timm", "ctranslate2", "ai_edge_litert", "learn2learn", "matplotlib",
                                    "efficientnet_lite_pytorch", "transformers", "sklearn", "soundfile"])
def test_every_extra_is_installed_in_ci(module):
    importlib.import_module(module)


@pytest.mark.skipif(not os.environ.get("CI"), reason="only in CI")
def test_shared_data_is_visible_in_ci():
    from conftest import DATA

    assert DATA.is_dir(), f"CI should see the shared data at {DATA} (FEWMM_DATA)"
