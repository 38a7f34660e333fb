"""higherpose-train: train in one process (the CPU or one GPU), or as one process of a torchrun launch.

    higherpose-train --cfg synthetic/higher_hrnet_tiny.yaml [KEY VALUE ...]
    torchrun --nproc-per-node 2 -m higherpose.cli.train --cfg ... [KEY VALUE ...]

Flags as higherpose-dist-train, which see; this one never spawns one process per GPU by itself.
"""
import sys

from higherpose.cli.common import run_tool


def main(argv=None):
    from higherpose.engine.launcher import main as launch

    return run_tool(launch, argv, spawn_per_gpu=False, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
