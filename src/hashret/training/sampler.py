"""Batch samplers: which training images form each batch of an epoch.

* :class:`RandomBatches`: a random permutation cut into batches (pointwise losses, DLBHC).
* :class:`ClassBalancedBatches`: P classes x K images per batch ("PK" sampling), so every
  batch holds valid triplets for the triplet ranking loss.

Both draw from the ``torch.Generator`` the loop seeds per epoch, so an epoch's batches are
reproducible (and the same again when an interrupted run resumes).
"""

from __future__ import annotations

import numpy as np
import torch


class RandomBatches:
    """A random permutation of ``n`` items cut into ``ceil(n / batch_size)`` batches
    (the last one may be smaller)."""

    def __init__(self, n: int, batch_size: int) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size = n, batch_size
        self.steps_per_epoch = -(-n // batch_size)

    def epoch(self, generator: torch.Generator) -> list[torch.Tensor]:
        """The batches of one epoch: ``steps_per_epoch`` int64 index tensors."""
        order = torch.randperm(self.n, generator=generator)
        b = self.batch_size
        return [order[i * b:(i + 1) * b] for i in range(self.steps_per_epoch)]


def resolve_pk(num_classes: int, batch_size: int, classes_per_batch: int | None,
               images_per_class: int | None) -> tuple[int, int]:
    """``(P, K)`` from whichever of them is given and the batch size (``P * K ~ batch_size``).

    Neither given: ``P = min(classes, batch_size // 4)``, ``K = batch_size // P``;
    one given: the other fills the batch. P is capped at the number of classes.

    Raises:
        ValueError: fewer than 2 classes, P > classes, or P or K below 2.
    """
    if num_classes < 2:
        raise ValueError(
            f"triplet training needs at least 2 classes in the training set, got {num_classes}: "
            "a triplet's negative comes from another class"
        )
    p, k = classes_per_batch, images_per_class
    if p is None:
        p = min(num_classes, max(2, batch_size // (k or 4)))
    if k is None:
        k = max(2, batch_size // p)
    if p < 2 or k < 2:
        raise ValueError(
            f"a class-balanced batch needs P >= 2 classes and K >= 2 images per class, got P={p}, "
            f"K={k}: raise --classes-per-batch / --images-per-class"
        )
    if p > num_classes:
        raise ValueError(
            f"--classes-per-batch {p} but the training set has {num_classes} classes: "
            f"use at most {num_classes}"
        )
    return p, k


class ClassBalancedBatches:
    """P classes x K images per batch, without repeats inside a batch.

    Each batch draws P distinct classes uniformly, then the next K images of each class
    from a per-class random permutation (reshuffled when fewer than K are left). An epoch
    is ``max(1, n // (P K))`` batches, about one pass over the data.

    Args:
        labels: int ``[n]`` class of each training item.
        classes_per_batch: P >= 2.
        images_per_class: K >= 2; every class must have at least K items.

    Raises:
        ValueError: fewer than P classes, or a class with fewer than K items (the message
            names it and the largest K that works).
    """

    def __init__(self, labels: np.ndarray | torch.Tensor, classes_per_batch: int,
                 images_per_class: int) -> None:
        y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
        if y.ndim != 1:
            raise ValueError(f"labels must be int [n], got shape {y.shape}")
        classes, counts = np.unique(y, return_counts=True)
        p, k = classes_per_batch, images_per_class
        if p < 2 or k < 2:
            raise ValueError(f"need P >= 2 classes and K >= 2 images per class, got P={p}, K={k}")
        if len(classes) < 2:
            raise ValueError(
                f"triplet training needs at least 2 classes, the training set has {len(classes)}: "
                "a triplet's negative comes from another class"
            )
        if len(classes) < p:
            raise ValueError(
                f"the training set has {len(classes)} classes, fewer than P={p} classes per batch: "
                f"use --classes-per-batch {len(classes)} or fewer"
            )
        short = counts < k
        if short.any():
            worst = int(np.argmin(counts))
            raise ValueError(
                f"{int(short.sum())} class(es) have fewer than K={k} training images (class "
                f"{int(classes[worst])} has {int(counts[worst])}): use --images-per-class "
                f"{int(counts.min())} or fewer (at least 2), or drop the classes with fewer images"
            )
        self.p, self.k = p, k
        self.members = [torch.from_numpy(np.flatnonzero(y == c)) for c in classes]  # [C] x int64[m_c]
        self.steps_per_epoch = max(1, len(y) // (p * k))

    def epoch(self, generator: torch.Generator) -> list[torch.Tensor]:
        """The batches of one epoch: ``steps_per_epoch`` int64 tensors of ``P * K`` indices,
        grouped by class (K consecutive items share a class)."""
        queues = [m[torch.randperm(len(m), generator=generator)] for m in self.members]
        heads = [0] * len(queues)
        batches = []
        for _ in range(self.steps_per_epoch):
            chosen = torch.randperm(len(queues), generator=generator)[:self.p].tolist()
            parts = []
            for c in chosen:
                if heads[c] + self.k > len(queues[c]):
                    m = self.members[c]
                    queues[c], heads[c] = m[torch.randperm(len(m), generator=generator)], 0
                parts.append(queues[c][heads[c]:heads[c] + self.k])
                heads[c] += self.k
            batches.append(torch.cat(parts))
        return batches
