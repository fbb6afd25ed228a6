"""Fixtures for the vision tests: real photos from ../shared/testdata (never copied here)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTDATA = Path(os.environ.get("PROCTOR_TESTDATA", REPO_ROOT.parent / "shared" / "testdata"))


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"test photos not found at {TESTDATA} (set PROCTOR_TESTDATA)")
    return TESTDATA


@pytest.fixture(scope="session")
def load_image(testdata_dir):
    """load_image("a_1_webcam_woman_T1.jpg") -> BGR uint8 array (as OpenCV reads it)."""
    import cv2

    cache: dict[str, object] = {}

    def _load(name: str):
        if name not in cache:
            img = cv2.imread(str(testdata_dir / name), cv2.IMREAD_COLOR)
            if img is None:
                pytest.fail(f"could not read test photo {name}")
            cache[name] = img
        return cache[name].copy()

    return _load


@pytest.fixture(scope="session")
def cfg():
    """The vision settings' defaults (no PROCTOR_* environment)."""
    from config_vision import load_vision_config

    return load_vision_config(env={})


@pytest.fixture(scope="session")
def photo(cfg):
    """The face stage in photo mode (every call an unrelated picture), shared by the face tests."""
    from face_pipeline import FaceAnalyzer

    analyzer = FaceAnalyzer(cfg, static_image_mode=True)
    yield analyzer
    analyzer.close()
