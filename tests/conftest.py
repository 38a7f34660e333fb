import os
import sys

import pytest
import torch

# Tests run against the checkout (an editable install points here too).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")
CROWDPOSE_VAL = os.path.normpath(os.path.join(SHARED, "data", "crowdpose_val.json"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is available on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def crowdpose_val_path():
    """The real CrowdPose validation annotations from ../shared/data (never copied into the repo)."""
    if not os.path.isfile(CROWDPOSE_VAL):
        pytest.fail(f"the shared CrowdPose annotations are missing: {CROWDPOSE_VAL}")
    return CROWDPOSE_VAL
