"""Synthetic crowds: deterministic, readable by the CrowdPose loader, labels agree with pixels;
the packaged real layouts (the default) equal those read from CrowdPose's annotation file."""
import filecmp
import gzip
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from higherpose.data import KeypointDataset, dataset_info
from higherpose.data.synthetic import MARKER_RGB, PACKAGED_LAYOUTS, crowd_index, generate, load_layouts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def png_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("syn_png"))
    generate(root, num_train=12, num_test=3, image_size=160, seed=4, image_format="png", min_people=2, max_people=7)
    return root


def _all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_same_seed_gives_identical_files(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    generate(a, 4, 2, 96, seed=1)
    generate(b, 4, 2, 96, seed=1)
    generate(c, 4, 2, 96, seed=2)
    files = _all_files(a)
    assert files == _all_files(b) and len(files) == 4 + (4 + 2 + 2)  # 4 json files, train+val+test images
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors
    assert not filecmp.cmp(os.path.join(a, "images", "100000.jpg"), os.path.join(c, "images", "100000.jpg"),
                           shallow=False)


def test_splits_and_trainval(png_set):
    sets = {s: json.load(open(os.path.join(png_set, "json", f"crowdpose_{s}.json")))
            for s in ("train", "val", "test", "trainval")}
    assert [len(sets[s]["images"]) for s in ("train", "val", "test", "trainval")] == [12, 3, 3, 15]
    assert len(sets["trainval"]["annotations"]) == len(sets["train"]["annotations"]) + len(sets["val"]["annotations"])
    cat = sets["train"]["categories"][0]
    info = dataset_info("crowdpose")
    assert cat["keypoints"] == info.joint_names and cat["skeleton"] == info.skeleton_1based


def test_loader_reads_it_and_fields_are_consistent(png_set):
    ds = KeypointDataset("crowdpose", png_set, "train")
    assert len(ds) == 12
    counts = []
    for image_id in ds.image_ids:
        info = ds.image_info(image_id)
        assert {"file_name", "id", "width", "height", "crowdIndex"} <= set(info)
        image = ds.read_image(image_id)
        assert image.shape == (info["height"], info["width"], 3)
        anns = ds.annotations(image_id)
        counts.append(len(anns))
        for a in anns:
            kp = np.asarray(a["keypoints"], float).reshape(14, 3)
            assert a["num_keypoints"] == int((kp[:, 2] > 0).sum()) >= 2 and a["iscrowd"] == 0
            assert (kp[kp[:, 2] == 0] == 0).all()  # unlabelled joints are (0, 0, 0)
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 160 and y + h <= 160 and w > 0 and h > 0
            on = kp[:, 2] > 0
            assert (kp[on, 0] >= x - 1).all() and (kp[on, 0] <= x + w + 1).all()
        boxes = [a["bbox"] for a in anns]
        assert info["crowdIndex"] == crowd_index([a["keypoints"] for a in anns], boxes)
    assert max(counts) >= 3 and min(counts) >= 1


def test_visibility_agrees_with_pixels(png_set):
    """v = 2 ⇔ the joint's own marker colour is at its pixel; v = 1 joints are hidden."""
    ds = KeypointDataset("crowdpose", png_set, "trainval")
    visible = occluded = occluded_showing_colour = 0
    for image_id in ds.image_ids:
        rgb = ds.read_image(image_id)[..., ::-1].astype(int)
        for a in ds.annotations(image_id):
            kp = np.asarray(a["keypoints"], float).reshape(14, 3)
            for j, (x, y, v) in enumerate(kp):
                if v == 0:
                    continue
                shows = bool((rgb[int(y), int(x)] == MARKER_RGB[j]).all())
                if v == 2:
                    assert shows, (image_id, a["id"], j)
                    visible += 1
                else:
                    occluded += 1
                    occluded_showing_colour += shows  # only if another figure's same joint covers it
    assert visible > 200 and occluded > 10
    assert occluded_showing_colour <= 0.05 * occluded


@pytest.mark.parametrize("layouts", [PACKAGED_LAYOUTS, None])
def test_joints_outside_the_image_are_unlabelled(tmp_path, layouts):
    generate(str(tmp_path), 30, 0, 64, seed=9, num_val=0, min_people=3, max_people=6, layouts=layouts)
    data = json.load(open(tmp_path / "json" / "crowdpose_train.json"))
    kps = np.array([a["keypoints"] for a in data["annotations"]], float).reshape(-1, 14, 3)
    lab = kps[..., 2] > 0
    assert (kps[lab][:, :2] >= 0).all() and (kps[lab][:, :2] < 64).all()
    assert (~lab).sum() > 0  # with 64² images some figures leave the frame


def test_crowd_index_hand_worked():
    # A (3 labelled joints) has B's two joints in its box; B (2 joints) contains one of A's.
    kps_a = [1, 1, 2, 5, 5, 2, 9, 9, 1] + [0, 0, 0] * 11
    kps_b = [4, 4, 2, 6, 6, 1] + [0, 0, 0] * 12
    boxes = [[0, 0, 10, 10], [4, 4, 2, 2]]
    assert crowd_index([kps_a, kps_b], boxes) == round((2 / 3 + 1 / 2) / 2, 2)
    assert crowd_index([kps_a], [[0, 0, 10, 10]]) == 0.0


def crowd_index_agreement(path):
    """Fraction of images whose published crowdIndex our formula reproduces."""
    data = json.load(open(path))
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    same = 0
    for img in data["images"]:
        anns = [a for a in by_image.get(img["id"], []) if not a["iscrowd"]]
        ours = crowd_index([a["keypoints"] for a in anns], [a["bbox"] for a in anns]) if anns else 0.0
        same += abs(ours - img["crowdIndex"]) < 0.006
    return same / len(data["images"])


def test_crowd_index_formula_on_real_crowdpose(crowdpose_val_path):
    assert crowd_index_agreement(crowdpose_val_path) > 0.7


def test_crowd_index_formula_on_full_crowdpose(crowdpose_val_full):
    assert crowd_index_agreement(crowdpose_val_full) > 0.7


def test_layouts_from_real_crowdpose(tmp_path, crowdpose_val_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    generate(a, 6, 1, 128, seed=3, layouts=crowdpose_val_path, max_people=5)
    generate(b, 6, 1, 128, seed=3, layouts=crowdpose_val_path, max_people=5)
    ds = KeypointDataset("crowdpose", a, "train")
    n = [len(ds.annotations(i)) for i in ds.image_ids]
    assert all(1 <= k <= 5 for k in n)
    assert filecmp.cmp(os.path.join(a, "json", "crowdpose_train.json"), os.path.join(b, "json", "crowdpose_train.json"),
                       shallow=False)


def packaged_layout_records():
    """The packaged layouts file, read directly (gzip JSON: images with id, width, height and
    persons with xy, known, bbox), not through the code under test."""
    from importlib.resources import files
    data = (files("higherpose") / "data" / "layouts" / "crowdpose_val_layouts.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))["images"]


def assert_same_layouts(got, expected):
    """Layout lists equal in order, values and types (what rendering depends on)."""
    assert len(got) == len(expected)
    for (w, h, persons), (w2, h2, persons2) in zip(got, expected):
        assert (w, h) == (w2, h2) and type(w) is type(w2) and len(persons) == len(persons2)
        for (kp, known, bbox), (kp2, known2, bbox2) in zip(persons, persons2):
            assert kp.dtype == kp2.dtype == np.float64 and kp.shape == kp2.shape == (14, 2)
            assert np.array_equal(kp, kp2) and np.array_equal(known, known2) and known.dtype == known2.dtype == bool
            assert bbox == bbox2 and [type(v) for v in bbox] == [type(v) for v in bbox2]


def test_packaged_layouts_match_the_subset(crowdpose_val_path):
    """The packaged records of the subset's images are exactly the subset's usable persons
    (not iscrowd, >= 4 labelled joints; computed here from the raw JSON), and load_layouts gives
    the same for the packaged file and for the subset file."""
    packaged = packaged_layout_records()
    by_id = {r["id"]: r for r in packaged}
    data = json.load(open(crowdpose_val_path))
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    expected = []
    for img in data["images"]:
        persons = []
        for a in by_image.get(img["id"], []):
            k = np.asarray(a["keypoints"]).reshape(14, 3)
            if not a["iscrowd"] and (k[:, 2] > 0).sum() >= 4:
                persons.append({"xy": k[:, :2].reshape(-1).tolist(), "known": (k[:, 2] > 0).astype(int).tolist(),
                                "bbox": a["bbox"]})
        if persons:
            expected.append({"id": img["id"], "width": img["width"], "height": img["height"], "persons": persons})
        else:
            assert img["id"] not in by_id
    assert len(expected) > 300
    assert [by_id[r["id"]] for r in expected] == expected
    # same relative order in the packaged file as in the annotation file
    position = {r["id"]: i for i, r in enumerate(packaged)}
    assert sorted(position[r["id"]] for r in expected) == [position[r["id"]] for r in expected]
    # load_layouts on either source: the packaged file decodes to its records, the subset to the same
    as_layouts = [(float(r["width"]), float(r["height"]),
                   [(np.asarray(p["xy"], np.float64).reshape(14, 2), np.asarray(p["known"], bool), p["bbox"])
                    for p in r["persons"]]) for r in packaged]
    assert_same_layouts(load_layouts(PACKAGED_LAYOUTS), as_layouts)
    in_subset = [as_layouts[position[r["id"]]] for r in expected]
    assert_same_layouts(load_layouts(crowdpose_val_path), in_subset)


def test_packaged_layouts_equal_the_full_file(crowdpose_val_full, tmp_path):
    """Packaged layouts and crowdpose_val.json itself: same list, and byte-identical renders."""
    assert_same_layouts(load_layouts(PACKAGED_LAYOUTS), load_layouts(crowdpose_val_full))
    a, b = str(tmp_path / "packaged"), str(tmp_path / "file")
    generate(a, 8, 2, 128, seed=7, image_format="png", max_people=6)  # the default is the packaged set
    generate(b, 8, 2, 128, seed=7, image_format="png", max_people=6, layouts=crowdpose_val_full)
    files = _all_files(a)
    assert files == _all_files(b) and len(files) == 4 + 12
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors


def test_layouts_choice(tmp_path):
    """Default = packaged real layouts; None and "none" = sampled poses only, which differ."""
    assert load_layouts(None) is None and load_layouts("none") is None
    runs = {name: str(tmp_path / name) for name in ("default", "packaged", "none", "sampled")}
    generate(runs["default"], 3, 0, 96, seed=2, num_val=0)
    generate(runs["packaged"], 3, 0, 96, seed=2, num_val=0, layouts=PACKAGED_LAYOUTS)
    generate(runs["none"], 3, 0, 96, seed=2, num_val=0, layouts="none")
    generate(runs["sampled"], 3, 0, 96, seed=2, num_val=0, layouts=None)

    def same(x, y):
        files = _all_files(runs[x])
        return filecmp.cmpfiles(runs[x], runs[y], files, shallow=False)[0] == files

    assert same("default", "packaged") and same("none", "sampled")
    assert not filecmp.cmp(os.path.join(runs["default"], "json", "crowdpose_train.json"),
                           os.path.join(runs["sampled"], "json", "crowdpose_train.json"), shallow=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_people"):
        generate("/tmp/unused", 1, 1, 64, 0, min_people=3, max_people=2)
    with pytest.raises(ValueError, match="image_format"):
        generate("/tmp/unused", 1, 1, 64, 0, image_format="gif")


def test_command_line_tool(tmp_path):
    out = tmp_path / "cli"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_synthetic.py"), "--out", str(out),
                          "--num-train", "2", "--num-test", "1", "--image-size", "64", "--seed", "5"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (out / "json" / "crowdpose_trainval.json").is_file()
    assert cv2.imread(str(out / "images" / "100001.jpg")).shape == (64, 64, 3)


def test_build_dataset_renders_missing_synthetic_set(tmp_path):
    from higherpose.config import get_default_config
    from higherpose.data import build_dataset
    cfg = get_default_config()
    cfg.DATASET.ROOT = str(tmp_path / "auto")
    cfg.DATASET.DATASET = cfg.DATASET.DATASET_TEST = "synthetic_crowd"
    cfg.DATASET.TRAIN, cfg.DATASET.TEST = "train", "test"
    cfg.DATASET.NUM_JOINTS = cfg.MODEL.NUM_JOINTS = 14
    cfg.DATASET.INPUT_SIZE, cfg.DATASET.OUTPUT_SIZE = 64, [16, 32]
    cfg.DATASET.SYNTHETIC.NUM_TRAIN, cfg.DATASET.SYNTHETIC.NUM_TEST = 3, 2
    cfg.DATASET.SYNTHETIC.IMAGE_SIZE = 64
    train = build_dataset(cfg, is_train=True)
    test = build_dataset(cfg, is_train=False)
    assert len(train) <= 3 and len(test) == 2 and test.name == "crowdpose"
    assert train[0][0].shape == (3, 64, 64)


def test_difficulty_knobs(tmp_path):
    generate(str(tmp_path / "easy"), 3, 0, 96, seed=6, num_val=0, image_format="png", marker_scale=2.0, clutter=0.0)
    generate(str(tmp_path / "base"), 3, 0, 96, seed=6, num_val=0, image_format="png")
    easy = KeypointDataset("crowdpose", str(tmp_path / "easy"), "train")
    base = KeypointDataset("crowdpose", str(tmp_path / "base"), "train")
    image_id = easy.image_ids[0]
    assert not np.array_equal(easy.read_image(image_id), base.read_image(image_id))
    # same poses (the knobs change drawing, not the scene), marker colours where visible
    for a, b in zip(easy.annotations(image_id), base.annotations(image_id)):
        ka, kb = np.asarray(a["keypoints"]).reshape(14, 3), np.asarray(b["keypoints"]).reshape(14, 3)
        on = (ka[:, 2] > 0) & (kb[:, 2] > 0)
        np.testing.assert_allclose(ka[on, :2], kb[on, :2])
    rgb = easy.read_image(image_id)[..., ::-1].astype(int)
    for a in easy.annotations(image_id):
        for j, (x, y, v) in enumerate(np.asarray(a["keypoints"], float).reshape(14, 3)):
            if v == 2:
                assert (rgb[int(y), int(x)] == MARKER_RGB[j]).all()
