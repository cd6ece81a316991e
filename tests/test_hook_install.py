"""The pre-commit hook's environment, installed by the real pre-commit framework from the package
index: small, and without torch (issue #13: it was 6.3 GB with the CUDA build of torch)."""

from __future__ import annotations

import pytest

from .hookenv import LIMIT_MB, install_hook, unavailable


@pytest.mark.timeout(1800)
def test_the_hook_environment_is_light(tmp_path):
    why = unavailable()
    if why:
        pytest.skip(f"cannot install the hook here: {why}")
    installed = install_hook(tmp_path)
    largest = ", ".join(f"{name} {mb:.0f} MB" for name, mb in installed.largest)
    assert not installed.heavy, f"the hook's environment holds {', '.join(installed.heavy)}"
    assert installed.megabytes < LIMIT_MB, f"{installed.megabytes:.0f} MB installed; largest: {largest}"
