"""The command-line tools, one module each, installed as console scripts.

    higherpose-train          one training process (CPU, one GPU, or one process of torchrun)
    higherpose-dist-train     training with one process per GPU (upstream's tools/dist_train.py)
    higherpose-valid          evaluate on the test split: results JSON, metrics table, timing
    higherpose-demo           draw predicted poses on images or a video
    higherpose-make-synthetic render a synthetic CrowdPose-format data set
    higherpose-model-info     parameters and MACs of configs; --list names the packaged configs
    higherpose-quickstart     synthetic crowds -> train on the CPU -> evaluate -> report

Each module's `main(argv=None)` returns an exit status; `python -m higherpose.cli.<tool>` and
`python tools/<tool>.py` run the same code. Flags may come before or after the `KEY VALUE` config
overrides. A missing data set, weights file or config and a bad override print one
`error: ...` line and exit with status 2 (see higherpose.errors).
"""
