"""Multi-process training with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``torchrun --nproc_per_node 2 -m hashret.cli train ...`` starts one process per rank with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`hashret.training.train` sees them, joins the process group (gloo on CPU, NCCL on
CUDA) and trains with the same configuration meaning as on one process:

* ``batch_size`` is the *effective* batch: every rank draws the same global batch from
  the seeded sampler and takes its own slice (:func:`shard_batch`, rank ``r`` gets items
  ``r, r + world, ...``), so per-rank batch x world = the configured batch; epochs, steps
  per epoch and the learning-rate schedule are those of the single-process run;
* DistributedDataParallel averages the gradients over the ranks: the step is the mean
  gradient of the global batch (equal slices), and the weights stay identical on every
  rank (:func:`parameters_digest` is recorded per rank in the history to show it);
* the running loss / accuracy are summed over the ranks (:func:`all_reduce_sums`);
* rank 0 alone evaluates on the validation split, selects the checkpoint and writes the
  run directory; the others wait for it (:func:`barrier`).

Differences from one process that remain by design: BatchNorm batch statistics are per
rank (each rank normalises its own slice, as DDP does by default); training
augmentations are drawn per rank from a rank-specific generator; float sums are done in
another order. So a 2-process run is not bit-identical to a 1-process run, but it is the
same training (same data, batch, steps, schedule, selection).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` in ``0..size-1``; ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def world() -> World:
    """The current world: from the process group when initialised, else ``torchrun``'s
    environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def is_distributed() -> bool:
    """Training runs on several processes (an initialised group of size > 1)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(device: str = "cpu") -> bool:
    """Join the process group ``torchrun`` describes, if any; True if this call joined it.

    Backend: NCCL for a CUDA device, gloo otherwise. With CUDA, rank ``local_rank`` uses
    ``cuda:local_rank``. Does nothing for a single process or an existing group.

    Raises:
        RuntimeError: ``WORLD_SIZE > 1`` but ``MASTER_ADDR`` / ``MASTER_PORT`` are missing
            (start the ranks with ``torchrun``).
    """
    w = world()
    if w.size <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={w.size} but {', '.join(missing)} is not set: start multi-process training "
            "with `torchrun --nproc_per_node N -m hashret.cli train ...`"
        )
    cuda = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(w.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def rank_device(device: str) -> str:
    """The device of this rank: ``cuda:local_rank`` for a CUDA run, else ``device``."""
    if is_distributed() and str(device).startswith("cuda"):
        return f"cuda:{world().local_rank}"
    return device


def wrap_model(model: nn.Module) -> nn.Module:
    """``model`` in DistributedDataParallel when distributed (parameters broadcast from
    rank 0), else ``model`` itself. Call it after the model has its final device/layout."""
    if not is_distributed():
        return model
    device_ids = [model_device(model).index] if model_device(model).type == "cuda" else None
    # static graph: one forward per step, the same parameters each time; parameters a method
    # leaves unused (a classifier head the triplet loss does not read) do not stall the reduction
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, static_graph=True)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def shard_batch(idx: torch.Tensor) -> torch.Tensor:
    """This rank's slice of a global batch of indices: items ``rank, rank + world, ...``."""
    w = world()
    return idx[w.rank :: w.size] if is_distributed() else idx


def rank_generator(seed: int) -> torch.Generator | None:
    """A generator for this rank's augmentations (``None`` on one process: use the shared one)."""
    if not is_distributed():
        return None
    return torch.Generator().manual_seed(seed * 1_000_003 + 7919 * world().rank)


def all_reduce_sums(values: list[float]) -> list[float]:
    """Sum each value over the ranks (identity on one process)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (identity on one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def parameters_digest(model: nn.Module) -> str:
    """SHA-256 of the parameters' bytes (buffers such as BatchNorm statistics excluded)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def gather_digests(model: nn.Module) -> list[str]:
    """:func:`parameters_digest` of every rank, in rank order."""
    digest = parameters_digest(model)
    if not is_distributed():
        return [digest]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, digest)
    return out


def barrier() -> None:
    """Wait for every rank (no-op on one process)."""
    if is_distributed():
        dist.barrier()


def shutdown(joined: bool) -> None:
    """Leave the process group if :func:`init_distributed` joined it."""
    if joined and dist.is_initialized():
        dist.destroy_process_group()
