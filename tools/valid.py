#!/usr/bin/env python
"""Evaluate a model on its test split: results JSON, metrics table, timing.

    python tools/valid.py --cfg configs/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml \
        TEST.MODEL_FILE model.pth TEST.SCALE_FACTOR '[0.5, 1.0, 2.0]'

Weights: TEST.MODEL_FILE, else model_best.pth.tar in OUTPUT_DIR/<dataset>/<model>/<cfg stem>/.
Writes results/keypoints_<split>_results.json and results/keypoints_<split>_table.md there.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate a pose network on its test split")
    p.add_argument("--cfg", required=True, help="experiment YAML")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward (default TEST.IMAGES_PER_GPU)")
    p.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from higherpose.config import load_config
    from higherpose.data import build_dataset, is_top_down
    from higherpose.engine.logger import close_logger, create_logger
    from higherpose.evaluation import timing_lines
    from higherpose.models import build_model, load_checkpoint

    cfg = load_config(args.cfg, args.opts)
    logger, final_dir, _ = create_logger(cfg, args.cfg, phase="valid")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model_file = cfg.TEST.MODEL_FILE or os.path.join(final_dir, "model_best.pth.tar")
    if not os.path.isfile(model_file):
        raise SystemExit(f"error: no weights: {model_file} does not exist (set TEST.MODEL_FILE or train first)")
    model = build_model(cfg, is_train=False)
    logger.info(f"=> loading model from {model_file}")
    load_checkpoint(model, model_file)
    model.to(device).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN.BENCHMARK)
    dataset = build_dataset(cfg, is_train=False)
    results_dir = os.path.join(final_dir, "results")
    batch_size = args.batch_size or int(cfg.TEST.IMAGES_PER_GPU)
    logger.info(f"=> {len(dataset.image_ids)} test images from {dataset.ann_file} on {device}")

    if is_top_down(cfg):
        from higherpose.evaluation.top_down_runner import evaluate_top_down
        out = evaluate_top_down(model, dataset, cfg, results_dir, device=device, batch_size=batch_size,
                                progress=not args.no_progress)
    else:
        from higherpose.evaluation import evaluate_bottom_up
        from higherpose.inference import BottomUpInference, BottomUpSettings
        inference = BottomUpInference(model, BottomUpSettings.from_config(cfg, flip_index=dataset.info.flip_index))
        out = evaluate_bottom_up(inference, dataset, results_dir, cfg.MODEL.NAME, batch_size=batch_size,
                                 max_images=args.max_images, progress=not args.no_progress, logger=logger)
    logger.info(f"=> {out['num_persons']} persons written to {out['results_file']}")
    if out["table"]:
        for line in out["table"].split("\n"):
            logger.info(line)
        logger.info(f"=> table saved to {out['table_file']}")
    for line in timing_lines(out["timing"]):
        logger.info(line)
    close_logger(logger)
    return out


if __name__ == "__main__":
    main()
