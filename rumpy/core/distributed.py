"""Data-parallel training on torch.distributed: one process per GPU (or per CPU share, gloo),
started by torchrun (RANK/WORLD_SIZE in the environment) or, for `gpu = "multiple"`, by torch's
own elastic launcher re-running this command. Every rank trains on its shard of each global
batch; only rank 0 writes; every decision that ends a loop (a stop request, divergence, early
stopping) is agreed on, so no rank waits in a collective for one that left."""
from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from ..utils.process import die_with_parent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives (no-ops in one process) ---------------------------------------------------
    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            value = value.clone()
            torch_dist.all_reduce(value, op=torch_dist.ReduceOp.SUM)
        return value

    def max(self, value: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            value = value.clone()
            torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
        return value

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one."""
        if not self.enabled:
            return flag
        return bool(self.max(torch.tensor(int(flag), device=device)))

    def broadcast(self, obj):
        """Rank 0's object, on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's object, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out


SINGLE = Dist()


def under_launcher() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(gpu: str) -> Dist:
    """Joins the process group torchrun set up (nccl on GPUs, gloo on CPUs); one process
    otherwise."""
    if not under_launcher():
        return SINGLE
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = gpu != "off" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if cuda else "gloo")
    # The launcher killed (kill -9 of torchrun, a job's cleanup) must not leave the ranks
    # training unsupervised: its death is a SIGTERM to each, which saves and stops them.
    die_with_parent(signal.SIGTERM)
    return Dist(rank, world, local)


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def relaunch(argv: list[str]) -> None:
    """`gpu = "multiple"` outside torchrun: this command again, one process per visible GPU,
    through torch's elastic launcher (which also forwards SIGTERM to every rank)."""
    count = torch.cuda.device_count()
    if count < 1:
        raise ValueError("gpu = 'multiple' but CUDA is not available on this machine; use "
                         "torchrun --nproc_per_node N ... --gpu off for CPU processes")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={count}", "-m", "rumpy.cli.train", *argv]
    log.info("gpu = 'multiple': %d processes through torch.distributed.run", count)
    os.execv(sys.executable, command)
