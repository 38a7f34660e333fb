"""Deploy without Python: the whole bottom-up pipeline of one image size as one exported program.

    from higherpose import deploy
    deploy.export("synthetic/higher_hrnet_tiny.yaml", "model_best.pth.tar", "pose.pt2")   # or higherpose-export
    run = deploy.load("pose.pt2")
    poses = run(image_bgr)            # PosePrediction(keypoints [P, J, 3], scores [P]), image pixels

`export` traces `higherpose.deploy.pipeline.BottomUpPipeline` (pre-processing, network, flip,
stage aggregation, upsampling, heatmap peaks, grouping with adjust / refine, mapping to image
pixels) with torch.export, the batch size dynamic and the person count data-dependent, and
compiles it into an AOTInductor package (`.pt2`) for the CPU or a CUDA device. The package needs
no Python to run: examples/cpp/run_pose.cpp loads it with torch::inductor::AOTIModelPackageLoader
next to the higherpose operator library. With ``compile=False`` the program is saved with
torch.export.save instead (Python only; no C++ compiler needed at export time).
"""
import json
import zipfile

import numpy as np
import torch

METADATA_KEY = "higherpose"  # the package metadata entry (a JSON object) that describes the program


def export(cfg, weights, out, image_size=None, flip=None, device="cpu", compile=True, opts=None, max_batch=64):
    """Export the pipeline of `cfg` with `weights` to `out`; returns `out`.

    Args:
        cfg: experiment config (path or name; see `higherpose.config.resolve_config_path`) or CfgNode.
        weights: checkpoint file (any layout `higherpose.models.load_checkpoint` reads), or None for
            the freshly built weights (tests, timing).
        image_size: (width, height) of the images the program takes; default the config's input
            size, square. The Predictor runs such an image unchanged (no resize), so the program's
            poses are the Predictor's.
        flip: flip test on / off (default TEST.FLIP_TEST of the config).
        device: "cpu" or "cuda[:N]": where the program runs.
        compile: True: an AOTInductor package (C++ and Python); False: torch.export.save (Python).
        opts: extra ``KEY VALUE`` config overrides.
        max_batch: the largest batch the program takes (the batch dimension is dynamic).
    """
    from ..predictor import Predictor
    from .pipeline import example_images, pipeline_from_predictor

    opts = list(opts or [])
    if flip is not None:
        opts += ["TEST.FLIP_TEST", str(bool(flip))]
    predictor = Predictor(cfg, weights, device=device, opts=opts)
    pipeline = pipeline_from_predictor(predictor, image_size)
    example = example_images(pipeline.image_size, batch=2).to(predictor.device)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with torch.no_grad():
        program = torch.export.export(pipeline, (example,), dynamic_shapes={"images": {0: batch}})
    info = describe(predictor, pipeline)
    if compile:
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(out), inductor_configs={"aot_inductor.metadata": {METADATA_KEY: json.dumps(info)}})
    else:
        torch.export.save(program, str(out), extra_files={METADATA_KEY: json.dumps(info)})
    return out


def describe(predictor, pipeline):
    """What a runner needs to know about an exported program (stored in the package)."""
    s = predictor.inference.s
    return {"image_width": pipeline.image_size[0], "image_height": pipeline.image_size[1],
            "input": "uint8 BGR [B, H, W, 3]", "outputs": ["poses [B, P, J, 3] (x, y, score)", "scores [B, P]",
                                                             "counts [B]"],
            "num_joints": len(predictor.joint_names), "joint_names": predictor.joint_names,
            "skeleton": predictor.skeleton, "flip_test": bool(s.flip_test), "model": predictor.cfg.MODEL.NAME,
            "device": str(predictor.device.type)}


def is_aoti_package(path):
    with zipfile.ZipFile(path) as archive:
        return any("/aotinductor/" in name or name.startswith("aotinductor/") for name in archive.namelist())


class DeployedPipeline:
    """A loaded program: call it with one HxWx3 BGR uint8 image (or a list / [B, H, W, 3] array)
    of the exported size; returns `higherpose.PosePrediction`s (keypoints [P, J, 3], scores [P])."""

    def __init__(self, run, info, device):
        self._run = run
        self.info = info
        self.device = torch.device(device)
        self.image_size = (int(info["image_width"]), int(info["image_height"]))

    def raw(self, images):
        """The program's own outputs for a uint8 tensor [B, H, W, 3]: (poses, scores, counts)."""
        return self._run(images.to(self.device))

    def __call__(self, images):
        from ..predictor import PosePrediction

        single = isinstance(images, np.ndarray) and images.ndim == 3
        batch = np.stack([images] if single else list(images))
        width, height = self.image_size
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (height, width, 3):
            raise ValueError(f"this program takes uint8 BGR images of {width}x{height} (HxWx3), got "
                             f"{batch.shape[1:] if batch.ndim == 4 else batch.shape} {batch.dtype}")
        poses, scores, counts = self.raw(torch.from_numpy(np.ascontiguousarray(batch)))
        poses, scores, counts = poses.cpu().numpy(), scores.cpu().numpy(), counts.cpu().numpy()
        out = [PosePrediction(poses[b, :n].astype(np.float64), scores[b, :n].astype(np.float64))
               for b, n in enumerate(counts.tolist())]
        return out[0] if single else out


def load(path, device=None):
    """A callable for an exported program: an AOTInductor package or a torch.export file."""
    import higherpose.ops  # noqa: F401  (the program calls the higherpose operators)

    path = str(path)
    if is_aoti_package(path):
        runner = torch._inductor.aoti_load_package(path)
        info = json.loads(runner.get_metadata()[METADATA_KEY])

        def run(images):
            return tuple(runner(images))
    else:
        extra = {METADATA_KEY: ""}
        program = torch.export.load(path, extra_files=extra)
        info = json.loads(extra[METADATA_KEY])
        module = program.module()

        def run(images):
            with torch.no_grad():
                return tuple(module(images))
    return DeployedPipeline(run, info, device or info.get("device", "cpu"))


__all__ = ["export", "load", "DeployedPipeline", "METADATA_KEY"]
