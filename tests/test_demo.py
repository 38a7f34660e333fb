"""higherpose-demo (higherpose.cli.demo): image, folder and video in, annotated files out (stand-in model)."""
import json
import os

import cv2
import numpy as np
import pytest
from test_predictor import dot_image, make_predictor

from higherpose.cli import demo
from higherpose.errors import UserInputError

CFG = "configs/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml"


def test_image_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), dot_image(120, 90, 30, 40))
    cv2.imwrite(str(src / "b.jpg"), dot_image(100, 160, 100, 50))
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    written = demo.run(["--cfg", CFG, "--input", str(src), "--output", str(out), "--heatmap"],
                        predictor=make_predictor())
    assert sorted(os.path.basename(p) for p in written) == ["a.jpg", "b.jpg"]
    a = cv2.imread(str(out / "a.jpg"))
    assert a.shape == (120, 90, 3)
    poses = json.loads((out / "a.json").read_text())
    assert np.array(poses["keypoints"]).shape == (1, 14, 3)
    # something was drawn: the annotated image differs from the input away from the dot too
    assert np.abs(a.astype(int) - dot_image(120, 90, 30, 40)).sum() > 0


def test_video(tmp_path):
    path = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    assert writer.isOpened()
    for t in range(6):
        writer.write(dot_image(64, 96, 10 + 12 * t, 32))
    writer.release()
    out = tmp_path / "out"
    written = demo.run(["--cfg", CFG, "--input", path, "--output", str(out)], predictor=make_predictor())
    cap = cv2.VideoCapture(written[0])
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (64, 96, 3)
        frames += 1
    assert frames == 6


def test_bad_input(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        demo.run(["--cfg", CFG, "--input", str(tmp_path / "missing.jpg"), "--output", str(tmp_path)],
                  predictor=make_predictor())
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(UserInputError, match="neither"):
        demo.run(["--cfg", CFG, "--input", str(tmp_path / "x.xyz"), "--output", str(tmp_path)],
                  predictor=make_predictor())
