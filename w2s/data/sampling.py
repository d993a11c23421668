"""The training order: one seeded permutation per epoch, optionally grouped by length, cut
into global batches that the processes share, so that N processes take the same optimizer
steps as one.

With one process this is the order of a sampler that draws ``torch.randperm`` from a
generator seeded once (epoch e: the (e+1)-th permutation). It holds no state beyond the epoch,
so a resumed fit gets the same order by skipping the batches it already took (torchdata's
``StatefulDataLoader`` counts them) after Lightning sets the epoch.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochPermutation(Sampler[int]):
    """``0..n-1`` in the seeded order of epoch ``set_epoch(e)`` (Lightning calls it)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epoch):
            torch.randperm(self.n, generator=generator)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class LengthBuckets(Sampler[int]):
    """``order``'s rows regrouped so that a batch holds rows of similar length (less padding):
    each run of ``chunk`` batches (``chunk * batch_size`` rows of the epoch's order) is sorted
    by ``lengths`` and cut into batches, and its full batches are put in a seeded random order
    (a short last batch stays last). Every row is still seen once an epoch, and a batch is
    still ``batch_size`` consecutive rows of this order."""

    def __init__(self, order: EpochPermutation, lengths: list[int], batch_size: int, chunk: int):
        if chunk < 1 or len(lengths) != len(order):
            raise ValueError(f"chunk must be >= 1 batches and one length per row, got {chunk}, "
                             f"{len(lengths)} lengths for {len(order)} rows")
        self.order, self.lengths, self.batch_size, self.chunk = order, lengths, batch_size, chunk

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        indices, size = list(self.order), self.batch_size * self.chunk
        generator = torch.Generator().manual_seed(self.order.seed * 1_000_003 + self.order.epoch)
        for start in range(0, len(indices), size):
            rows = sorted(indices[start:start + size], key=self.lengths.__getitem__)
            batches = [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
            full = len(rows) // self.batch_size
            for b in [*torch.randperm(full, generator=generator).tolist(), *range(full, len(batches))]:
                yield from batches[b]

    def __len__(self) -> int:
        return len(self.order)


class ProcessBatches(Sampler[list[int]]):
    """Global batches of ``batch_size`` rows from ``sampler``; process ``rank`` of ``world`` takes
    rows ``rank, rank + world, ...`` of each. A last batch with fewer rows than processes is
    dropped (every process must take the same number of steps); the processes' shares of a
    batch differ by at most one row, equal when ``batch_size`` is a multiple of ``world``."""

    def __init__(self, sampler: Sampler[int], batch_size: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of {world} processes")
        self.sampler, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch[self.rank::self.world]
                batch = []
        if len(batch) >= self.world:
            yield batch[self.rank::self.world]

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full + (rest >= self.world if rest else 0)
