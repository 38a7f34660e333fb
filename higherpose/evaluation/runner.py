"""Run a test split through an inference pipeline, write the results JSON, score it, make the table."""
import os
import time
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict

from .keypoint_eval import evaluate_keypoints, metric_style
from .results import person_records, write_results
from .tables import format_table


def _read(dataset, ids):
    return [dataset.read_image(i) for i in ids]


def _has_annotations(dataset):
    return any(len(dataset.annotations(i)) for i in dataset.image_ids)


def evaluate_bottom_up(inference, dataset, results_dir, arch_name, batch_size=1, max_images=None,
                       progress=True, logger=None):
    """Bottom-up evaluation of `dataset` (a KeypointDataset) with a `BottomUpInference`.

    Writes ``results_dir/keypoints_<split>_results.json`` and, when the split has annotations,
    ``keypoints_<split>_table.md``. Returns a dict with ``metrics`` (OrderedDict or None), ``table``,
    ``results_file``, ``table_file`` and ``timing`` (seconds: read, model, post, total; images).
    """
    log = logger.info if logger is not None else print
    image_ids = list(dataset.image_ids)[:max_images] if max_images else list(dataset.image_ids)
    if not image_ids:
        raise ValueError(f"the test split {dataset.ann_file} has no images")
    inference.timer.model = inference.timer.post = 0.0
    inference.timer.images = 0
    records, t_read = [], 0.0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(image_ids), desc="valid", unit="img", leave=False)
    chunks = [image_ids[i:i + batch_size] for i in range(0, len(image_ids), batch_size)]
    t_start = time.perf_counter()
    # the next batch is read (decoded by OpenCV, which releases the GIL) while this one runs
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_read, dataset, chunks[0])
        for k, ids in enumerate(chunks):
            t0 = time.perf_counter()
            images = pending.result()
            t_read += time.perf_counter() - t0  # time spent waiting for images
            if k + 1 < len(chunks):
                pending = pool.submit(_read, dataset, chunks[k + 1])
            for image_id, (poses, scores) in zip(ids, inference.predict(images, batch_size=batch_size)):
                records += person_records(image_id, poses, scores, category_id=getattr(dataset, "category_id", 1))
            if bar is not None:
                bar.update(len(ids))
    total = time.perf_counter() - t_start
    if bar is not None:
        bar.close()
    split = getattr(dataset, "split", "test")
    os.makedirs(results_dir, exist_ok=True)
    results_file = write_results(os.path.join(results_dir, f"keypoints_{split}_results.json"), records)
    timing = {"images": len(image_ids), "read": t_read, "model": inference.timer.model,
              "post": inference.timer.post, "total": total}
    out = {"metrics": None, "table": None, "results_file": results_file, "table_file": None, "timing": timing,
           "num_persons": len(records)}
    if not _has_annotations(dataset):
        log(f"{dataset.ann_file} has no annotations: results written, no metrics")
        return out
    style = metric_style(dataset.name)
    sigmas = getattr(getattr(dataset, "info", None), "sigmas", None) or None
    metrics = evaluate_keypoints(dataset.ann_file, records, style=style, sigmas=sigmas)
    table = format_table(metrics, arch_name)
    table_file = os.path.join(results_dir, f"keypoints_{split}_table.md")
    with open(table_file, "w") as f:
        f.write(table + "\n")
    out.update(metrics=OrderedDict(metrics), table=table, table_file=table_file)
    return out


def timing_lines(timing):
    """Human-readable timing summary: per image, split into model and post-processing, and images/s."""
    n = max(timing["images"], 1)
    per = {k: 1000.0 * timing[k] / n for k in ("read", "model", "post", "total")}
    return [f"time per image: model {per['model']:.1f} ms (pre-processing, network, flip and map aggregation), "
            f"post-processing {per['post']:.1f} ms (decoding/grouping, back to the image), "
            f"waiting for images {per['read']:.1f} ms; total {per['total']:.1f} ms",
            f"throughput: {n / max(timing['total'], 1e-9):.2f} images/s end to end, "
            f"{n / max(timing['model'] + timing['post'], 1e-9):.2f} images/s model + post-processing"]
