import gzip
import os
import sys

import pytest
import torch

# Tests run against the checkout (an editable install points here too).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
CROWDPOSE_SUBSET = os.path.join(DATA, "crowdpose_val_subset.json.gz")
# Names the full crowdpose_val.json of the CrowdPose API; tests of the full file skip without it.
FULL_FILE_ENV = "HIGHERPOSE_CROWDPOSE_VAL"


def pytest_collection_modifyitems(config, items):
    # `slow` tests (larger fuzzing budgets) run only when asked for: pytest -m slow.
    slow_selected = "slow" in (config.getoption("-m") or "")
    skip_slow = pytest.mark.skip(reason="long-running: run with -m slow")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU; none is available on this machine")
    for item in items:
        if "slow" in item.keywords and not slow_selected:
            item.add_marker(skip_slow)
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(scope="session")
def crowdpose_val_path(tmp_path_factory):
    """The committed subset of the real CrowdPose val annotations (tests/data/README.md), as a
    plain .json file: the annotation loader reads uncompressed JSON."""
    path = tmp_path_factory.mktemp("crowdpose") / "crowdpose_val_subset.json"
    with gzip.open(CROWDPOSE_SUBSET, "rb") as f:
        path.write_bytes(f.read())
    return str(path)


@pytest.fixture(scope="session")
def crowdpose_val_full():
    """The full crowdpose_val.json, where the environment variable names it."""
    path = os.environ.get(FULL_FILE_ENV)
    if not path:
        pytest.skip(f"full CrowdPose val file not given: set {FULL_FILE_ENV} to the path of crowdpose_val.json")
    if not os.path.isfile(path):
        pytest.fail(f"{FULL_FILE_ENV}={path}: no such file")
    return path


@pytest.fixture(scope="session")
def install_prefix(tmp_path_factory):
    """The CMake library installed as another project finds it: HIGHERPOSE_CMAKE_PREFIX (CI builds
    it beforehand), else built and installed once per test run (about a minute of 2-core CPU)."""
    from cmake_builds import build_and_install_library

    prebuilt = os.environ.get("HIGHERPOSE_CMAKE_PREFIX")
    if prebuilt:
        assert os.path.isdir(prebuilt), f"HIGHERPOSE_CMAKE_PREFIX points to a missing folder: {prebuilt}"
        return prebuilt
    return build_and_install_library(tmp_path_factory.mktemp("build_cmake"), tmp_path_factory.mktemp("install"))


@pytest.fixture(scope="session")
def cpp_examples(install_prefix, tmp_path_factory):
    """examples/cpp built against the installed library; the folder holding the executables."""
    from cmake_builds import build_examples

    return build_examples(install_prefix, tmp_path_factory.mktemp("build_examples"))

