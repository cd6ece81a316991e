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


# Chroma is an extra (`moderate[chroma]`): with chromadb in the core the environment measured 898 MB
# (chromadb and what only it needs: 394 MB, kubernetes and onnxruntime the largest); without it about
# 504 MB. The hook reads the data folder's saved index and never imports Chroma (tests/test_without_chroma.py).
def test_the_hook_environment_is_under_the_limit(installed):
    largest = ", ".join(f"{name} {mb:.0f} MB" for name, mb in installed.largest)
    assert installed.megabytes < LIMIT_MB, f"{installed.megabytes:.0f} MB installed; largest: {largest}"
