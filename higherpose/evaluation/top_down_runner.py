"""Top-down evaluation: crops from GT boxes or a detection file, flip test, OKS-NMS, metrics."""
import os
import time
from collections import OrderedDict

import numpy as np
import torch

from ..inference.top_down import decode_heatmaps, oks_nms, rescore, top_down_heatmaps
from .keypoint_eval import evaluate_keypoints, metric_style
from .results import person_records, write_results
from .tables import format_table


def evaluate_top_down(model, dataset, cfg, results_dir, device=None, batch_size=32, progress=True, num_workers=0):
    """Evaluate a top-down model on a `TopDownDataset` (test mode). Returns the same dict as
    `evaluate_bottom_up`."""
    device = device or next(model.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    flip_index = dataset.info.flip_index
    per_image = {}
    t_model = t_post = 0.0
    t_start = time.perf_counter()
    iterator = loader
    if progress:
        from tqdm import tqdm
        iterator = tqdm(loader, desc="valid", unit="batch", leave=False)
    for crops, meta in iterator:
        t0 = time.perf_counter()
        heat = top_down_heatmaps(model, crops.to(device), flip_index, flip_test=bool(cfg.TEST.FLIP_TEST),
                                 shift_heatmap=bool(cfg.TEST.SHIFT_HEATMAP))
        heat = heat.float().cpu().numpy()
        t1 = time.perf_counter()
        centers, scales = meta["center"].numpy(), meta["scale"].numpy()
        preds, maxvals = decode_heatmaps(heat, centers, scales)
        scores = rescore(maxvals, meta["score"].numpy(), cfg.TEST.IN_VIS_THRE)
        areas = np.prod(scales * 200.0, axis=1)
        for b, image_id in enumerate(meta["image_id"].tolist()):
            pose = np.concatenate([preds[b], maxvals[b]], axis=1)
            per_image.setdefault(image_id, []).append((pose, scores[b], areas[b]))
        t_post += time.perf_counter() - t1
        t_model += t1 - t0
    t2 = time.perf_counter()
    records = []
    sigmas = np.asarray(dataset.info.sigmas)
    for image_id, persons in per_image.items():
        poses = np.stack([p[0] for p in persons])
        scores = np.array([p[1] for p in persons])
        areas = np.array([p[2] for p in persons])
        keep = oks_nms(poses, scores, areas, cfg.TEST.OKS_THRE, sigmas)
        records += person_records(image_id, poses[keep], scores[keep], category_id=getattr(dataset.base, "category_id", 1))
    t_post += time.perf_counter() - t2
    split = dataset.base.split
    results_file = write_results(os.path.join(results_dir, f"keypoints_{split}_results.json"), records)
    timing = {"images": len(dataset.image_ids), "read": 0.0, "model": t_model, "post": t_post,
              "total": time.perf_counter() - t_start}
    out = {"metrics": None, "table": None, "results_file": results_file, "table_file": None,
           "timing": timing, "num_persons": len(records)}
    if not any(len(dataset.base.annotations(i)) for i in dataset.image_ids):
        return out
    metrics = evaluate_keypoints(dataset.ann_file, records, style=metric_style(dataset.name), sigmas=sigmas)
    table = format_table(metrics, cfg.MODEL.NAME)
    table_file = os.path.join(results_dir, f"keypoints_{split}_table.md")
    with open(table_file, "w") as f:
        f.write(table + "\n")
    out.update(metrics=OrderedDict(metrics), table=table, table_file=table_file)
    return out
