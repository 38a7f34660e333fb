"""Output folders, log files, TensorBoard and the training-curve plot (the last two optional).

Folders as upstream: OUTPUT_DIR/<DATASET.DATASET>/<MODEL.NAME>/<cfg file stem>/ holds the
checkpoints and the log file `<stem>_<time>_<phase>_rank<r>.log`; TensorBoard event files go to
LOG_DIR/<DATASET.DATASET>/<MODEL.NAME>/<stem>_<time>/.
"""
import logging
import os
import sys
import time


def output_dirs(cfg, cfg_file):
    """(final_output_dir, tensorboard_log_dir_without_time) for a config and its file name."""
    dataset = str(cfg.DATASET.DATASET).replace(":", "_")
    stem = os.path.splitext(os.path.basename(cfg_file or "config.yaml"))[0]
    final = os.path.join(cfg.OUTPUT_DIR, dataset, cfg.MODEL.NAME, stem)
    tb_root = os.path.join(cfg.LOG_DIR, dataset, cfg.MODEL.NAME, stem)
    return final, tb_root


def create_logger(cfg, cfg_file, phase="train", rank=0):
    """(logger, final_output_dir, tensorboard_log_dir); folders are created by every rank."""
    final_dir, tb_root = output_dirs(cfg, cfg_file)
    os.makedirs(final_dir, exist_ok=True)
    time_str = time.strftime("%Y-%m-%d-%H-%M")
    stem = os.path.basename(final_dir)
    log_file = os.path.join(final_dir, f"{stem}_{time_str}_{phase}_rank{rank}.log")
    logger = logging.getLogger(f"higherpose.{phase}.rank{rank}")
    logger.setLevel(logging.DEBUG)  # the file gets DEBUG (the full config), the console INFO
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)-15s %(message)s")
    fh = logging.FileHandler(log_file)
    fh.setFormatter(fmt)
    logger.addHandler(fh)
    if rank == 0:
        sh = _TqdmHandler()
        sh.setLevel(logging.INFO)
        sh.setFormatter(fmt)
        logger.addHandler(sh)
    return logger, final_dir, f"{tb_root}_{time_str}"


class _TqdmHandler(logging.StreamHandler):
    """Console output that does not break a running tqdm progress bar."""

    def emit(self, record):
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def close_logger(logger):
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


class TensorBoard:
    """SummaryWriter on rank 0; does nothing elsewhere or when tensorboard is missing."""

    def __init__(self, log_dir, enabled=True, logger=None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # tensorboard is optional at run time
            if logger:
                logger.warning(f"TensorBoard disabled: {err}")
            return
        self.writer = SummaryWriter(log_dir=log_dir)

    def scalars(self, values, step):
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def close(self):
        if self.writer is not None:
            self.writer.close()


def plot_training_curve(history, path, title=None):
    """PNG of the logged losses against the iteration (one line per component, log scale).

    `history` is a list of dicts with "iteration" and loss values (what the trainer logs).
    Returns the path, or None when there is nothing to draw or matplotlib is not installed (it
    comes with the optional `train` extra; the run itself does not need it).
    """
    if not history:
        return None
    try:
        import matplotlib
    except ImportError:
        print(f"warning: matplotlib is not installed, so {path} is not drawn "
              "(pip install 'higherpose[train]')", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in history[0] if k not in ("iteration", "epoch", "lr", "images_per_s")]
    steps = [h["iteration"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for name in names:
        vals = [h.get(name, float("nan")) for h in history]
        ax.plot(steps, vals, label=name, linewidth=1.4 if name == "loss" else 1.0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if all(h.get(n, 1.0) > 0 for h in history for n in names):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
