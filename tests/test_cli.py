"""The command-line tools as a user meets them: console scripts run from a folder that is not the
checkout, flags before or after the KEY VALUE overrides, and one `error: ...` line (exit code 2,
no traceback) for a missing data set, weights file or config and for a bad override."""
import json
import os
import subprocess
import sys

import pytest

from higherpose.config import packaged_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)  # the console scripts sit next to the environment's python
TOOLS = ["train", "dist-train", "valid", "demo", "make-synthetic", "model-info", "quickstart"]
CROWD_W32 = "experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml"  # upstream spelling
TINY = "synthetic/higher_hrnet_tiny.yaml"


def run(cwd, tool, *argv):
    """`higherpose-<tool> argv...` in `cwd`, as a shell would run it."""
    return subprocess.run([os.path.join(BIN, f"higherpose-{tool}"), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def user_error(proc):
    """The single `error:` line of a run that failed on the user's input."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr)
    return lines[0]


def write_crowdpose_test_split(root):
    """A one-image CrowdPose test annotation file under root/json, without its image."""
    os.makedirs(os.path.join(root, "json"))
    person = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 1,
              "bbox": [10, 10, 20, 40], "keypoints": [20, 20, 2] + [0, 0, 0] * 13}
    data = {"images": [{"id": 1, "file_name": "1.jpg", "width": 64, "height": 64, "crowdIndex": 0.1}],
            "annotations": [person], "categories": [{"id": 1, "name": "person"}]}
    with open(os.path.join(root, "json", "crowdpose_test.json"), "w") as f:
        json.dump(data, f)


# ----------------------------------------------------------------------------- scripts exist

@pytest.mark.parametrize("tool", TOOLS)
def test_console_script_help(tmp_path, tool):
    proc = run(tmp_path, tool, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: higherpose-{tool} ")


def test_tools_wrappers_run_the_installed_package(tmp_path):
    for name in ("train", "dist_train", "valid", "demo", "make_synthetic", "model_info", "quickstart"):
        text = open(os.path.join(ROOT, "tools", f"{name}.py")).read()
        assert "sys.path.insert" not in text and "sys.path.append" not in text, name
        assert f"from higherpose.cli.{name} import main" in text, name
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "valid.py"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--cfg" in proc.stdout, proc.stderr


def test_model_info_lists_and_measures_packaged_configs(tmp_path):
    proc = run(tmp_path, "model-info", "--list")
    assert proc.returncode == 0, proc.stderr
    names = proc.stdout.split()
    assert names == packaged_configs()
    assert {TINY, "crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml", "coco/hrt/hrt_small_coco_256x192.yaml"} <= set(names)
    proc = run(tmp_path, "model-info", "--cfg", TINY)  # a listed name works from any folder
    assert proc.returncode == 0, proc.stderr
    assert f"| {TINY}" in proc.stdout and "pose_higher_hrnet" in proc.stdout


# ----------------------------------------------------------------------------- missing data

def test_missing_annotation_file(tmp_path):
    proc = run(tmp_path, "train", "--cfg", CROWD_W32, "MODEL.PRETRAINED", "", "--cpu")
    line = user_error(proc)
    assert "annotation file not found: data/crowd_pose/json/crowdpose_trainval.json" in line
    assert "docs/DATA.md" in line


def test_missing_image_folder(tmp_path):
    write_crowdpose_test_split(tmp_path / "crowd")
    (tmp_path / "w.pth").write_bytes(b"")  # only has to exist: the data are checked before it is read
    proc = run(tmp_path, "valid", "--cfg", CROWD_W32, "TEST.MODEL_FILE", "w.pth", "DATASET.ROOT", "crowd")
    line = user_error(proc)
    assert "image folder not found: crowd/images" in line and "docs/DATA.md" in line


# ----------------------------------------------------------------------------- missing weights

def test_missing_model_file_with_flags_after_the_overrides(tmp_path):
    proc = run(tmp_path, "valid", "--cfg", CROWD_W32, "TEST.MODEL_FILE", "m.pth", "--device", "cpu")
    line = user_error(proc)
    assert "TEST.MODEL_FILE not found: m.pth" in line and "docs/DATA.md" in line
    assert not (tmp_path / "output").exists()  # nothing written before the check


def test_flags_before_and_between_overrides_and_number_like_values(tmp_path):
    proc = run(tmp_path, "valid", "--device", "cpu", "--cfg", TINY, "SEED", "-1", "--no-progress",
               "TEST.SCALE_FACTOR", "[0.5, 1.0]", "TEST.MODEL_FILE", "m.pth")
    assert "TEST.MODEL_FILE not found: m.pth" in user_error(proc)


def test_missing_pretrained_weights(tmp_path):
    proc = run(tmp_path, "train", "--cfg", CROWD_W32, "--cpu")
    line = user_error(proc)
    assert "MODEL.PRETRAINED" in line and "models/pytorch/imagenet/hrnet_w32-36af842e.pth" in line
    assert "docs/DATA.md" in line


def test_missing_demo_weights(tmp_path):
    (tmp_path / "people.jpg").write_bytes(b"")
    proc = run(tmp_path, "demo", "--cfg", CROWD_W32, "--input", "people.jpg", "--output", "out",
               "--weights", "nothere.pth")
    assert "weights file (--weights) not found: nothere.pth" in user_error(proc)


# ----------------------------------------------------------------------------- bad config

@pytest.mark.parametrize("tool, opts, expected", [
    ("train", ["TRAIN.NO_SUCH_KEY", "1"], "Non-existent key: TRAIN.NO_SUCH_KEY"),
    ("valid", ["TRAIN.LR"], "KEY VALUE pairs, got an odd list: ['TRAIN.LR']"),
    ("demo", ["TRAIN.LR", "fast"], "for config key: TRAIN.LR"),
])
def test_bad_override(tmp_path, tool, opts, expected):
    extra = ["--input", "x.jpg", "--output", "out"] if tool == "demo" else []
    if tool == "demo":
        (tmp_path / "x.jpg").write_bytes(b"")
    proc = run(tmp_path, tool, "--cfg", TINY, *opts, *extra)
    assert expected in user_error(proc)


def test_unknown_and_ambiguous_config(tmp_path):
    line = user_error(run(tmp_path, "valid", "--cfg", "nope.yaml"))
    assert "config file not found: nope.yaml" in line and "higherpose-model-info --list" in line
    line = user_error(run(tmp_path, "dist-train", "--cfg", "w32_512_adam_lr1e-3"))
    assert "'w32_512_adam_lr1e-3' is ambiguous" in line and "crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml" in line


def test_quickstart_bad_config_deletes_nothing(tmp_path):
    keep = tmp_path / "output" / "quickstart" / "data" / "keep.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("x")
    assert "config file not found: nope.yaml" in user_error(run(tmp_path, "quickstart", "--cfg", "nope.yaml"))
    assert keep.exists()


def test_make_synthetic_missing_layouts_file(tmp_path):
    proc = run(tmp_path, "make-synthetic", "--out", "syn", "--layouts", "gone.json")
    assert "annotation file not found: gone.json" in user_error(proc)


def test_unknown_flag_is_a_usage_error(tmp_path):
    proc = run(tmp_path, "valid", "--cfg", TINY, "TEST.MODEL_FILE", "m.pth", "--devise", "cpu")
    assert proc.returncode == 2 and "unrecognized arguments: --devise" in proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- in-process pieces

def test_parse_with_overrides_keeps_order_and_takes_only_known_flags():
    import argparse

    from higherpose.cli.common import parse_with_overrides
    p = argparse.ArgumentParser()
    p.add_argument("--cfg")
    p.add_argument("--device")
    p.add_argument("--max-images", type=int)
    args = parse_with_overrides(p, ["A", "1", "--cfg", "x.yaml", "TRAIN.LR", "-1e-3", "--device", "cpu",
                                    "SEED", "-1", "--max-images", "-3", "S", "[0.5, 1.0]", "--", "K", "--odd"])
    assert args.cfg == "x.yaml" and args.device == "cpu" and args.max_images == -3
    assert args.opts == ["A", "1", "TRAIN.LR", "-1e-3", "SEED", "-1", "S", "[0.5, 1.0]", "K", "--odd"]
    with pytest.raises(SystemExit):
        parse_with_overrides(p, ["--cfg", "x.yaml", "--bogus"])


def test_training_command_line_takes_flags_after_overrides():
    from higherpose.engine.launcher import parse
    args, cfg = parse(["--cfg", TINY, "TRAIN.END_EPOCH", "3", "--cpu", "SEED", "-1", "--world-size", "1"])
    assert args.cpu and args.world_size == 1
    assert cfg.TRAIN.END_EPOCH == 3 and cfg.SEED == -1


def test_run_tool_reports_user_errors_and_keeps_bugs(capsys):
    from higherpose.cli.common import run_tool
    from higherpose.errors import MissingInputError

    def missing():
        raise MissingInputError("annotation file not found: a.json\n(see docs/DATA.md)")

    assert run_tool(missing) == 2
    assert capsys.readouterr().err == "error: annotation file not found: a.json (see docs/DATA.md)\n"

    def bug():
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_tool(bug)
    assert run_tool(lambda: {"table": "x"}) == 0 and run_tool(lambda: 3) == 3


def test_training_curve_skipped_without_matplotlib(tmp_path, monkeypatch, capsys):
    from higherpose.engine.logger import plot_training_curve
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    path = tmp_path / "curve.png"
    assert plot_training_curve([{"iteration": 1, "loss": 1.0}], str(path)) is None
    assert not path.exists()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: matplotlib is not installed")


def test_ochuman_missing_annotations_named_by_their_official_file(tmp_path):
    from higherpose.data import dataset_paths
    official = str(tmp_path / "annotations" / "ochuman_coco_format_val_range_0.00_1.00.json")
    assert dataset_paths("ochuman", str(tmp_path), "val")[0] == official
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_val.json").write_text("{}")
    assert dataset_paths("ochuman", str(tmp_path), "val")[0].endswith("person_keypoints_val.json")
