"""Data-parallel training under `torchrun`: one process per GPU (or several on CPU), one model each.

Every rank draws the same global batch from the shared random streams and trains on its own
contiguous slice of it, so `batch_size` is global and a run's data does not depend on how many
ranks share it. After each backward pass the gradients are averaged over the ranks, so every
replica takes the same optimiser step and the replicas stay identical without ever being
re-broadcast.

Why an explicit all-reduce and not DistributedDataParallel: one GAN step calls the
discriminator three or four times (real, fake.detach(), fake for the generator, and the
penalties), and the penalties differentiate it with `torch.autograd.grad(create_graph=True)`.
DDP's reducer expects one forward per backward and does not support `autograd.grad`; the
generator's backward also writes gradients into the discriminator that must not be averaged
or applied. Averaging exactly the gradients an optimiser is about to apply, right before its
`step()`, is correct for every loss and penalty, at the price of not overlapping communication
with the backward pass, which matters little for networks of this size.

Batch norm stays per rank (plain BatchNorm, statistics over the rank's slice, as in a
single-GPU run with that batch): SyncBatchNorm runs only on GPUs, has no double backward
(which R1 needs) and would add a collective to every discriminator call. The running
statistics, which only sampling and export use, are averaged over the ranks after every step
so that every replica, and so the checkpoint, holds the same ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """The distributed launch cannot work as set up; the message says what to change."""


@dataclass(frozen=True)
class World:
    """Which process this is among those that train one model together."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # which of this machine's GPUs the rank drives

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and samples."""
        return self.rank == 0


SINGLE_PROCESS = World()


def world_from_environment(environ: Mapping[str, str]) -> World:
    """The World that `torchrun` describes in RANK, WORLD_SIZE and LOCAL_RANK; one process when unset."""
    if "WORLD_SIZE" not in environ:
        return SINGLE_PROCESS
    missing = [name for name in LAUNCH_VARIABLES if not environ.get(name)]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not; start distributed training with "
            "torchrun --nproc-per-node N -m training.cli ..., or unset WORLD_SIZE for one process"
        )
    try:
        world = World(rank=int(environ["RANK"]), size=int(environ["WORLD_SIZE"]), local_rank=int(environ["LOCAL_RANK"]))
    except ValueError:
        raise DistributedError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers, got "
            f"{environ['RANK']!r}, {environ['WORLD_SIZE']!r}, {environ['LOCAL_RANK']!r}"
        ) from None
    if not 0 <= world.rank < world.size:
        raise DistributedError(f"RANK={world.rank} must lie in 0..WORLD_SIZE-1 ({world.size - 1})")
    return world


def backend_for(device: str) -> str:
    """nccl when the ranks train on GPUs (`device` auto or cuda with a GPU present), else gloo."""
    return "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"


@contextmanager
def process_group(world: World, device: str) -> Iterator[None]:
    """Join the other ranks for the duration of the block (nothing to do for a single process)."""
    if not world.distributed:
        yield
        return
    backend = backend_for(device)
    bound = torch.device("cuda", world.local_rank) if backend == "nccl" else None
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, device_id=bound)
    try:
        yield
        dist.barrier()  # leave together: no rank drops its connections while rank 0 still writes
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, world: World) -> torch.device:
    """Under torchrun each rank drives its own GPU: `cuda` becomes cuda:LOCAL_RANK."""
    if device.type != "cuda" or not world.distributed:
        return device
    if device.index is not None:
        raise DistributedError(
            f"device: {device} names one GPU, but under torchrun each rank uses cuda:LOCAL_RANK; set device=cuda"
        )
    if world.local_rank >= torch.cuda.device_count():
        raise DistributedError(
            f"LOCAL_RANK={world.local_rank} but this machine has {torch.cuda.device_count()} GPU(s); "
            "start at most one process per GPU (torchrun --nproc-per-node)"
        )
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def check_batch_split(batch_size: int, pack: int, world: World) -> None:
    """The global batch must split into equal slices of at least two samples, whole PacGAN packs each."""
    multiple = world.size * pack
    if batch_size % multiple or batch_size // world.size < 2:
        raise DistributedError(
            f"batch_size: {batch_size} (global) does not split into {world.size} equal slices of at least 2 "
            f"samples that are multiples of model.pack={pack}; use a multiple of {max(multiple, 2 * world.size)}"
        )


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous slice of a global batch that every rank drew alike."""
    if not world.distributed:
        return batch
    size = len(batch) // world.size
    return batch[world.rank * size : (world.rank + 1) * size]


def rank_generator(shared: torch.Generator, world: World) -> torch.Generator:
    """A random stream of this rank's own, for per-sample randomness inside a step (augmentation, penalties).

    Every rank draws one seed per rank from `shared`, so the shared stream stays in step on all
    ranks (and rank 0's checkpoint resumes them all) while no two ranks augment alike. A single
    process uses `shared` itself.
    """
    if not world.distributed:
        return shared
    seeds = torch.randint(2**62, (world.size,), generator=shared)
    return torch.Generator().manual_seed(int(seeds[world.rank]))


def average_gradients(module: nn.Module, world: World) -> None:
    """Replace each gradient of `module` by its mean over the ranks (one all-reduce for all of them).

    Every rank runs the same graph, so the same parameters have gradients on every rank.
    """
    if not world.distributed:
        return
    _average_in_place([p.grad for p in module.parameters() if p.grad is not None], world)


def average_buffers(module: nn.Module, world: World) -> None:
    """Average the floating-point buffers (batch-norm running statistics) over the ranks."""
    if not world.distributed:
        return
    _average_in_place([b for b in module.buffers() if b.is_floating_point()], world)


def average_scalars(values: Mapping[str, torch.Tensor], world: World) -> dict[str, float]:
    """Scalar tensors as floats, averaged over the ranks: the figures of the whole global batch."""
    stacked = torch.stack([value.detach() for value in values.values()])
    if world.distributed:
        dist.all_reduce(stacked)
        stacked /= world.size
    return dict(zip(values, stacked.tolist(), strict=True))


def _average_in_place(tensors: list[torch.Tensor], world: World) -> None:
    if not tensors:
        return
    flat = torch.cat([tensor.reshape(-1) for tensor in tensors])
    dist.all_reduce(flat)
    flat /= world.size
    for tensor, mean in zip(tensors, flat.split([tensor.numel() for tensor in tensors]), strict=True):
        tensor.copy_(mean.view_as(tensor))
