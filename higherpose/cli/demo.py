"""higherpose-demo: pose estimation on an image, a folder of images or a video; annotated copies are written.

    higherpose-demo --cfg crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml \
        --weights model_best.pth.tar --input people.jpg --output out/ [--heatmap] [--kpt-thr 0.1]

Images -> <output>/<name>.jpg (plus <name>.json with the poses); a video -> <output>/<stem>_pose.mp4 (mp4v).
"""
import argparse
import json
import os
import sys

from higherpose.cli.common import load_config, parse_with_overrides, run_tool
from higherpose.errors import DATA_GUIDE, MissingInputError, UserInputError

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True, help="experiment config: a file or a packaged config name")
    p.add_argument("--weights", default=None, help="checkpoint (default TEST.MODEL_FILE)")
    p.add_argument("--input", required=True, help="an image, a folder of images, or a video")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    p.add_argument("--kpt-thr", type=float, default=0.1, help="keypoint score threshold for drawing")
    p.add_argument("--heatmap", action="store_true", help="overlay the joint heatmaps")
    p.add_argument("--no-scores", action="store_true", help="do not write person scores")
    p.add_argument("--max-frames", type=int, default=None, help="stop a video after N frames")
    return p


def annotate(predictor, image, args):
    from higherpose.vis import draw_poses, overlay_heatmap
    pred = predictor(image, return_heatmaps=args.heatmap)
    canvas = overlay_heatmap(image, pred.heatmap) if args.heatmap else image
    canvas = draw_poses(canvas, pred.keypoints, pred.scores, predictor.skeleton, keypoint_threshold=args.kpt_thr,
                        show_scores=not args.no_scores)
    return canvas, pred


def run_images(predictor, paths, args):
    import cv2
    written = []
    for path in paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print(f"warning: cannot read image {path}, skipped", file=sys.stderr)
            continue
        canvas, pred = annotate(predictor, image, args)
        stem = os.path.splitext(os.path.basename(path))[0]
        out = os.path.join(args.output, stem + ".jpg")
        cv2.imwrite(out, canvas)
        with open(os.path.join(args.output, stem + ".json"), "w") as f:
            json.dump({"keypoints": pred.keypoints.tolist(), "scores": pred.scores.tolist(),
                       "joint_names": predictor.joint_names}, f)
        written.append(out)
    return written


def run_video(predictor, path, args):
    import cv2
    from tqdm import tqdm
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise UserInputError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if args.max_frames:
        total = min(total or args.max_frames, args.max_frames)
    out_path = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + "_pose.mp4")
    writer = None
    frames = 0
    with tqdm(total=total, desc="video", unit="frame") as bar:
        while args.max_frames is None or frames < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            canvas, _ = annotate(predictor, frame, args)
            if writer is None:
                h, w = canvas.shape[:2]
                writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise UserInputError(f"cannot write video {out_path} (mp4v codec unavailable?)")
            writer.write(canvas)
            frames += 1
            bar.update(1)
    cap.release()
    if writer is not None:
        writer.release()
    if frames == 0:
        raise UserInputError(f"no frame could be read from {path}")
    return [out_path]


def input_kind(src):
    """('images', paths) or ('video', path) for --input; UserInputError when it is neither."""
    if os.path.isdir(src):
        paths = sorted(os.path.join(src, f) for f in os.listdir(src) if f.lower().endswith(IMAGE_EXT))
        if not paths:
            raise UserInputError(f"no images ({', '.join(IMAGE_EXT)}) in folder {src}")
        return "images", paths
    if not os.path.isfile(src):
        raise MissingInputError(f"input not found: {src}")
    if src.lower().endswith(VIDEO_EXT):
        return "video", src
    if src.lower().endswith(IMAGE_EXT):
        return "images", [src]
    raise UserInputError(f"{src} is neither an image ({', '.join(IMAGE_EXT)}) nor a video ({', '.join(VIDEO_EXT)})")


def run(argv=None, predictor=None):
    """Annotate --input; returns the files written. `predictor` replaces the one --cfg/--weights build."""
    args = parse_with_overrides(build_parser(), argv)
    kind, src = input_kind(args.input)  # checked before the model is built
    if predictor is None:
        from higherpose import Predictor
        cfg = load_config(args.cfg, args.opts)
        weights = args.weights or cfg.TEST.MODEL_FILE
        if not weights:
            raise UserInputError("no weights given: use --weights FILE or TEST.MODEL_FILE FILE")
        if not os.path.isfile(weights):
            flag = "--weights" if args.weights else "TEST.MODEL_FILE"
            raise MissingInputError(f"weights file ({flag}) not found: {weights} (see {DATA_GUIDE})")
        predictor = Predictor(cfg, weights, device=args.device)
    os.makedirs(args.output, exist_ok=True)
    written = run_video(predictor, src, args) if kind == "video" else run_images(predictor, src, args)
    print(f"wrote {len(written)} file(s) to {args.output}")
    return written


def main(argv=None):
    return run_tool(run, argv)


if __name__ == "__main__":
    sys.exit(main())
