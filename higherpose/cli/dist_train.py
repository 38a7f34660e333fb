"""higherpose-dist-train: distributed training as upstream's tools/dist_train.py (one process per GPU).

    higherpose-dist-train --cfg experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml
    higherpose-dist-train --cfg ... --world-size 2 --rank 0 --dist-url tcp://HOST:PORT
    higherpose-dist-train --cfg ... --cpu-procs 2          # two CPU processes, gloo
    torchrun --nproc-per-node 4 -m higherpose.cli.dist_train --cfg ...   # env:// rendezvous

With one GPU, `--gpu ID`, or no GPU it runs in this process (no spawn).
"""
import sys

from higherpose.cli.common import run_tool


def main(argv=None):
    from higherpose.engine.launcher import main as launch

    return run_tool(launch, argv, spawn_per_gpu=True, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
