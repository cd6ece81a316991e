"""The pre-commit hook's environment, installed by the real pre-commit framework from the package
index: without torch (issue #13: it was 6.3 GB with the CUDA build of torch), and small."""

from __future__ import annotations

import pytest

from .hookenv import LIMIT_MB, HookInstall, install_hook, unavailable

pytestmark = pytest.mark.timeout(1800)  # a fresh environment from the package index, once for the module


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> HookInstall:
    why = unavailable()
    if why:
        pytest.skip(f"cannot install the hook here: {why}")
    return install_hook(tmp_path_factory.mktemp("hook"))


def test_the_hook_environment_holds_no_torch(installed):
    assert not installed.heavy, f"the hook's environment holds {', '.join(installed.heavy)}"


# Measured at 877 MB without torch: the core's own dependencies are over the limit. chromadb requires
# kubernetes, onnxruntime, tokenizers, grpcio and uvicorn[standard] (about 370 MB with chromadb),
# opencv-python-headless is 160 MB, numpy 71, faiss-cpu 68, c2pa-python 55. Strict: once under the
# limit this fails as XPASS, and the marker goes.
@pytest.mark.xfail(strict=True, reason="issue #13: the light core's dependencies alone exceed 600 MB")
def test_the_hook_environment_is_under_the_limit(installed):
    largest = ", ".join(f"{name} {mb:.0f} MB" for name, mb in installed.largest)
    assert installed.megabytes < LIMIT_MB, f"{installed.megabytes:.0f} MB installed; largest: {largest}"
