"""Process-group set-up and the few collectives the trainer needs.

One `DistContext` describes the process: its global rank, the world size, its local rank on the
node and the device it computes on. A single process is a world of one (no process group).
"""
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0


def backend_for(device_type):
    """NCCL for CUDA devices, gloo for CPU processes."""
    return "nccl" if device_type == "cuda" else "gloo"


def init_process_group(ctx, init_method, backend=None):
    """Join the process group described by `ctx` (a no-op for a world of one)."""
    if not ctx.distributed:
        return
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    backend = backend or backend_for(ctx.device.type)
    if backend == "nccl" and ctx.device.type != "cuda":
        raise ValueError("the nccl backend needs CUDA devices; CPU processes use gloo")
    kwargs = {"device_id": ctx.device} if backend == "nccl" else {}
    dist.init_process_group(backend=backend, init_method=init_method, world_size=ctx.world_size,
                            rank=ctx.rank, **kwargs)


def destroy_process_group():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(tensor):
    """Mean of `tensor` over all processes (the tensor itself when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


def all_gather_objects(obj):
    """A list holding `obj` from every rank (just [obj] when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def barrier():
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def free_port():
    """A TCP port that is free right now on this host (for single-node spawned runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env():
    """(rank, world_size, local_rank) when launched by torchrun (env://), else None."""
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    if not all(k in os.environ for k in keys):
        return None
    try:
        rank, world, local = (int(os.environ[k]) for k in keys)
    except ValueError as err:
        raise ValueError(f"torchrun environment variables must be integers: {err}") from None
    if not (0 <= rank < world) or local < 0:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world} "
                         f"LOCAL_RANK={local}")
    if world > 1 and os.environ.get("MASTER_PORT") == "0":
        raise ValueError("MASTER_PORT=0: the processes cannot find each other; give torchrun "
                         "--standalone or --master-port N")
    return rank, world, local


SHARED_STORE_VAR = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"


def shared_store_restart_warning():
    """A warning for torchrun workers that may be restarted while sharing torchrun's store.

    With the c10d rendezvous torchrun hands its own TCPStore to the workers
    (TORCHELASTIC_USE_AGENT_STORE=True) and keeps that store across restarts with no per-attempt
    key prefix (seen with torch 2.13; pytorch/pytorch#135712): a restarted worker can read the
    address a dead worker left there, and joining the process group then fails ("Connection
    refused"), using up a restart. With TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 given to torchrun on
    every node, each attempt gets a fresh store. None when there is nothing to warn about.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    try:
        restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    except ValueError:
        return None
    if restarts < 1:
        return None
    return (f"warning: torchrun --max-restarts {restarts} with its shared rendezvous store: a restarted "
            f"worker may read a dead worker's address and fail to connect; start torchrun with "
            f"{SHARED_STORE_VAR}=1 on every node (pytorch/pytorch#135712)")
