import glob
import os

import pytest

from higherpose.config import load_config, resolve_config_path
from higherpose.config.loader import CONFIG_ROOT

ALL_CONFIGS = sorted(glob.glob(os.path.join(CONFIG_ROOT, "**", "*.yaml"), recursive=True))


def test_the_config_tree_is_there():
    assert len(ALL_CONFIGS) >= 10, ALL_CONFIGS


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: os.path.relpath(p, CONFIG_ROOT))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.MODEL.NAME
    assert len(cfg.LOSS.WITH_HEATMAPS_LOSS) == cfg.LOSS.NUM_STAGES


def test_upstream_experiments_path_resolves_to_configs():
    path = resolve_config_path("experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml")
    assert path == os.path.join(CONFIG_ROOT, "crowd_pose", "higher_hrnet", "w32_512_adam_lr1e-3.yaml")
    cfg = load_config("experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml",
                      ["TEST.MODEL_FILE", "weights.pth", "TEST.SCALE_FACTOR", "[0.5, 1.0, 2.0]"])
    assert cfg.DATASET.NUM_JOINTS == 14 and cfg.TEST.NMS_KERNEL == 5
    assert cfg.TEST.MODEL_FILE == "weights.pth" and list(cfg.TEST.SCALE_FACTOR) == [0.5, 1.0, 2.0]


def test_data_dir_is_joined_as_upstream(tmp_path):
    cfg = load_config(None, ["DATA_DIR", "/data", "DATASET.ROOT", "crowd_pose", "TEST.MODEL_FILE", "m.pth"])
    assert cfg.DATASET.ROOT == "/data/crowd_pose" and cfg.TEST.MODEL_FILE == "/data/m.pth"


def test_top_down_boolean_flip_is_read_as_a_probability(tmp_path):
    f = tmp_path / "td.yaml"
    f.write_text("DATASET:\n  FLIP: true\nMODEL:\n  NAME: pose_hrnet\n")
    assert load_config(str(f)).DATASET.FLIP == 0.5
    f.write_text("DATASET:\n  FLIP: false\n")
    assert load_config(str(f)).DATASET.FLIP == 0.0


def test_bad_configs_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config("experiments/nowhere/x.yaml")
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        load_config(None, ["TEST.FLIP_TEST"])
    with pytest.raises(KeyError):
        load_config(None, ["TEST.NO_SUCH_FIELD", "1"])
    with pytest.raises(ValueError, match="LOSS.NUM_STAGES"):
        load_config(None, ["LOSS.NUM_STAGES", "2"])
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(str(f))
