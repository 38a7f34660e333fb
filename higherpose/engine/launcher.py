"""Command line of higherpose-train / higherpose-dist-train (tools/train.py, tools/dist_train.py),
and how processes are started.

Ways to run (all reach `trainer.train` once per process):
- one process: the CPU, one GPU (`--gpu ID`, or the only GPU), or a world of one — no spawn;
- one process per GPU on this node, spawned (`dist_train.py` when several GPUs are visible and
  MULTIPROCESSING_DISTRIBUTED is true, as upstream);
- N CPU processes with gloo, spawned (`--cpu-procs N`);
- launched by torchrun (RANK / WORLD_SIZE / LOCAL_RANK in the environment, env://), on one node or
  several (`--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT`: the rendezvous gives the
  ranks). Workers that torchrun restarts (`--max-restarts`) resume from the last checkpoint
  (AUTO_RESUME); give torchrun TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 then (see
  distributed.shared_store_restart_warning). OUTPUT_DIR must be shared by all nodes;
- several nodes as upstream: `--world-size NODES --rank NODE --dist-url tcp://HOST:PORT`, each
  node spawning one process per GPU (global rank = node rank x GPUs per node + local rank).
NCCL on GPUs, gloo on CPUs. The per-process batch is TRAIN.IMAGES_PER_GPU (bottom-up) or
TRAIN.BATCH_SIZE_PER_GPU (top-down).
"""
import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.multiprocessing as mp

from .distributed import (DistContext, destroy_process_group, free_port, init_process_group,
                          shared_store_restart_warning, torchrun_env)

DEFAULT_DIST_URL = "tcp://127.0.0.1:23456"


def build_arg_parser(description):
    """The flags; the KEY VALUE overrides around them are collected by `parse`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--cfg", required=True,
                   help="experiment config: a file, or a packaged config name (experiments/... or configs/... "
                        "map onto the packaged tree; higherpose-model-info --list names them)")
    p.add_argument("--gpu", default=None, help="train on this one GPU id only (no data parallelism)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is visible")
    p.add_argument("--cpu-procs", type=int, default=0,
                   help="spawn this many CPU processes (gloo) instead of one per GPU")
    p.add_argument("--world-size", type=int, default=1,
                   help="number of nodes (-1 with --dist-url env:// reads WORLD_SIZE)")
    p.add_argument("--rank", type=int, default=0, help="node rank (-1 with env:// reads RANK)")
    p.add_argument("--dist-url", default=DEFAULT_DIST_URL, help="rendezvous URL for several processes")
    return p


@dataclass
class Plan:
    """What every spawned process needs (picklable)."""
    cfg: object
    cfg_file: str
    device_type: str  # "cuda" or "cpu"
    procs_per_node: int
    nodes: int = 1
    node_rank: int = 0
    dist_url: str = DEFAULT_DIST_URL
    gpu: Optional[int] = None
    components: object = None
    threads: int = 0
    extra: dict = field(default_factory=dict)


def parse(argv=None, description="Train a pose network"):
    """(args, cfg) from a command line whose flags may come before or after the KEY VALUE
    overrides; a bad flag or config exits with code 2 and one line naming what is wrong."""
    from higherpose.cli.common import exit_with_error, load_config, parse_with_overrides
    from higherpose.errors import UserInputError

    parser = build_arg_parser(description)
    args = parse_with_overrides(parser, argv)
    try:
        cfg = load_config(args.cfg, args.opts)
    except UserInputError as err:
        exit_with_error(err)
    if args.cpu_procs < 0:
        parser.error(f"--cpu-procs must be >= 0, got {args.cpu_procs}")
    if args.world_size == 0 or args.world_size < -1:
        parser.error(f"--world-size must be >= 1 (or -1 with env://), got {args.world_size}")
    if args.gpu is not None:
        try:
            args.gpu = int(args.gpu)
        except ValueError:
            parser.error(f"--gpu takes one integer GPU id, got {args.gpu!r} (use CUDA_VISIBLE_DEVICES "
                         "to choose several)")
        if args.cpu or args.cpu_procs:
            parser.error("--gpu cannot be combined with --cpu / --cpu-procs")
    return args, cfg


def make_plan(args, cfg, spawn_per_gpu, components=None):
    from higherpose.cli.common import exit_with_error

    cuda = torch.cuda.is_available() and not args.cpu and not args.cpu_procs
    if args.gpu is not None:
        if not torch.cuda.is_available():
            exit_with_error(f"--gpu {args.gpu} given but CUDA is not available")
        if not 0 <= args.gpu < torch.cuda.device_count():
            exit_with_error(f"--gpu {args.gpu} out of range: {torch.cuda.device_count()} GPU(s) visible")
    nodes, node_rank = args.world_size, args.rank
    if args.dist_url == "env://":
        if nodes == -1:
            nodes = int(os.environ.get("WORLD_SIZE", "1"))
        if node_rank == -1:
            node_rank = int(os.environ.get("RANK", "0"))
    if not 0 <= node_rank < nodes:
        exit_with_error(f"--rank {node_rank} must lie in [0, {nodes}) for --world-size {nodes}")
    if args.cpu_procs:
        per_node, device_type = args.cpu_procs, "cpu"
    elif cuda and args.gpu is None and spawn_per_gpu and cfg.MULTIPROCESSING_DISTRIBUTED:
        per_node, device_type = torch.cuda.device_count(), "cuda"
    else:
        per_node, device_type = 1, "cuda" if cuda else "cpu"
    threads = 0
    if device_type == "cpu" and per_node > 1:
        threads = max(1, (os.cpu_count() or 1) // per_node)
    return Plan(cfg=cfg, cfg_file=args.cfg, device_type=device_type, procs_per_node=per_node,
                nodes=nodes, node_rank=node_rank, dist_url=args.dist_url, gpu=args.gpu,
                components=components, threads=threads)


def run(plan, stop_after_iters=None):
    """Start the processes of `plan` on this node (or join torchrun's), wait for them."""
    env = torchrun_env()
    if env is not None:
        rank, world, local = env
        warning = shared_store_restart_warning()
        if warning and rank == 0:
            print(warning, file=sys.stderr, flush=True)
        device = _device(plan.device_type, local if plan.gpu is None else plan.gpu)
        return _worker_body(plan, DistContext(rank, world, local, device), "env://", stop_after_iters)
    world = plan.procs_per_node * plan.nodes
    if world == 1:
        device = _device(plan.device_type, plan.gpu or 0)
        return _worker_body(plan, DistContext(0, 1, 0, device), None, stop_after_iters)
    if plan.nodes == 1 and plan.dist_url == DEFAULT_DIST_URL:
        # One node: a free port avoids "Address already in use" from a previous run.
        plan.dist_url = f"tcp://127.0.0.1:{free_port()}"
    mp.spawn(_spawned, args=(plan, stop_after_iters), nprocs=plan.procs_per_node, join=True)
    return None


def _device(device_type, index):
    return torch.device("cuda", index) if device_type == "cuda" else torch.device("cpu")


def _spawned(local_rank, plan, stop_after_iters):
    rank = plan.node_rank * plan.procs_per_node + local_rank
    world = plan.nodes * plan.procs_per_node
    ctx = DistContext(rank, world, local_rank, _device(plan.device_type, local_rank))
    _worker_body(plan, ctx, plan.dist_url, stop_after_iters)


def _worker_body(plan, ctx, init_method, stop_after_iters):
    from .trainer import train

    if plan.threads:
        torch.set_num_threads(plan.threads)
    # DIST_BACKEND (upstream: nccl) applies to GPU processes; CPU processes always use gloo.
    backend = str(plan.cfg.DIST_BACKEND) if ctx.device.type == "cuda" else "gloo"
    init_process_group(ctx, init_method, backend)
    try:
        return train(plan.cfg, ctx, plan.cfg_file, plan.components, stop_after_iters)
    finally:
        destroy_process_group()


def main(argv=None, spawn_per_gpu=True, description="Train a pose network"):
    """Training from a command line: higherpose-dist-train (spawn_per_gpu=True) and higherpose-train
    (False), through higherpose.cli, which turns a UserInputError into one `error:` line."""
    args, cfg = parse(argv, description)
    plan = make_plan(args, cfg, spawn_per_gpu)
    run(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
