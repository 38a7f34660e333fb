"""higherpose-valid: evaluate a model on its test split (results JSON, metrics table, timing).

    higherpose-valid --cfg experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml \
        TEST.MODEL_FILE model.pth TEST.SCALE_FACTOR '[0.5, 1.0, 2.0]' --device cpu

Weights: TEST.MODEL_FILE, else model_best.pth.tar in OUTPUT_DIR/<dataset>/<model>/<cfg stem>/.
Writes results/keypoints_<split>_results.json and results/keypoints_<split>_table.md there.
"""
import argparse
import os
import sys

from higherpose.cli.common import load_config, parse_with_overrides, run_tool
from higherpose.errors import DATA_GUIDE, MissingInputError


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True, help="experiment config: a file or a packaged config name")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward (default TEST.IMAGES_PER_GPU)")
    p.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def weights_file(cfg, final_dir):
    """TEST.MODEL_FILE, else the trained model in the output folder; it must exist."""
    if cfg.TEST.MODEL_FILE:
        if not os.path.isfile(cfg.TEST.MODEL_FILE):
            raise MissingInputError(f"TEST.MODEL_FILE not found: {cfg.TEST.MODEL_FILE} (see {DATA_GUIDE})")
        return cfg.TEST.MODEL_FILE
    trained = os.path.join(final_dir, "model_best.pth.tar")
    if not os.path.isfile(trained):
        raise MissingInputError(f"no weights: TEST.MODEL_FILE is not set and {trained} does not exist "
                                f"(train first, or set TEST.MODEL_FILE; see {DATA_GUIDE})")
    return trained


def run(argv=None):
    """Evaluate; returns evaluate_bottom_up / evaluate_top_down's result dict (table, metrics, ...)."""
    args = parse_with_overrides(build_parser(), argv)
    import torch

    from higherpose.data import build_dataset, is_top_down
    from higherpose.engine.logger import close_logger, create_logger, output_dirs
    from higherpose.evaluation import timing_lines
    from higherpose.models import build_model, load_checkpoint

    cfg = load_config(args.cfg, args.opts)
    # The weights and the data set are checked before anything is built or written.
    model_file = weights_file(cfg, output_dirs(cfg, args.cfg)[0])
    dataset = build_dataset(cfg, is_train=False)
    logger, final_dir, _ = create_logger(cfg, args.cfg, phase="valid")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(cfg, is_train=False)
    logger.info(f"=> loading model from {model_file}")
    load_checkpoint(model, model_file)
    model.to(device).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN.BENCHMARK)
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


def main(argv=None):
    return run_tool(run, argv)


if __name__ == "__main__":
    sys.exit(main())
