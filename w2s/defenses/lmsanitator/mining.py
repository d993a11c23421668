"""LMSanitator's attack-vector mining (arXiv 2308.13904; meng-wenlong/LMSanitator,
``2-PV_mining_filtering/TOKEN``) on a frozen model.

A continuous trigger of ``trigger_length`` embeddings, initialised from vocabulary rows chosen by
the seed, fills as many slots inserted at word 1..min(32, n) of each unlabelled line. It is
optimised (Adam; the learning rate x``boost`` until its largest gradient reaches
``converge_grad``) to minimise :func:`w2s.losses.attack_vectors.mining_loss` of the monitored
output, the state the classification head reads (CLS for encoders, the last real token for
decoders). A seed that moves the outputs no further than ``distance`` from the clean ones
within two epochs is given up; after the last epoch the mean output of the last batch is an
*attack vector* if it is far from every vector already found, input-agnostic (batch entropy
above ln B - ``entropy_slack``) and made of embeddings within ``embedding_range`` times the
embedding matrix's range. A model is backdoored when a vector is found within ``seeds`` seeds.

With ``standardise`` (off by default; a deviation) every monitored output is first standardised
by the clean lines' mean and standard deviation per dimension, so the loss, the distance and the
entropy test read the same units on every model: the authors' slack assumes BERT's output scale,
and where outputs vary by about 0.1 (MiniLM-L6) the batch entropy of raw outputs is within 0.01 of
ln B for nearly any trigger, so the input-agnostic test passes almost vacuously.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from students.pooling import pool
from w2s.losses.attack_vectors import batch_entropy, input_agnostic, mining_loss


@dataclass(frozen=True)
class MiningOptions:
    """The search's settings: the authors' values except ``lines`` (2,000), ``max_length`` (128)
    and ``seeds`` (30 for detection), smaller for 2 CPU cores. ``distance``: the MSE from the
    clean outputs a candidate must exceed (null: the calibrated value, ``calibrate``);
    ``standardise``: search in units of the clean outputs' spread (above; false, the default: raw
    outputs, as the authors)."""

    trigger_length: int = 7
    lines: int = 256
    max_length: int = 64
    batch_size: int = 32
    epochs: int = 4
    lr: float = 2e-4
    boost: float = 100.0
    converge_grad: float = 5e-3
    seeds: int = 30
    distance: Optional[float] = None
    entropy_slack: float = 0.02
    embedding_range: float = 1.2
    max_word: int = 32
    standardise: bool = False

    def __post_init__(self):
        for key in ("trigger_length", "lines", "batch_size", "epochs", "seeds", "max_word"):
            if getattr(self, key) < 1:
                raise ValueError(f"lmsanitator {key} must be >= 1, got {getattr(self, key)}")
        if self.batch_size < 2 or self.lines < self.batch_size:
            raise ValueError(f"lmsanitator needs batch_size >= 2 and lines >= batch_size (the entropy is over the "
                             f"batch), got {self.batch_size}, {self.lines}")
        if self.lr <= 0 or self.boost < 1 or self.converge_grad <= 0 or self.embedding_range <= 0:
            raise ValueError("lmsanitator lr, converge_grad and embedding_range must be > 0 and boost >= 1")
        if self.distance is not None and self.distance <= 0:
            raise ValueError(f"lmsanitator distance must be > 0 (or null: calibrated), got {self.distance}")
        if self.max_length < self.trigger_length + 3:
            raise ValueError(f"lmsanitator max_length must leave room for the {self.trigger_length} trigger slots")


@dataclass(frozen=True)
class Scaling:
    """Per-dimension standardisation ``(o - center) / scale`` of monitored outputs (``(H,)`` each),
    fitted on clean outputs."""

    center: Tensor
    scale: Tensor

    @classmethod
    def fit(cls, outputs: Tensor) -> "Scaling":
        return cls(outputs.mean(0), outputs.std(0).clamp(min=1e-6))

    def __call__(self, outputs: Tensor) -> Tensor:
        return (outputs - self.center.to(outputs)) / self.scale.to(outputs)


@dataclass
class Lines:
    """Unlabelled lines with ``trigger_length`` slots inserted: ``ids``/``mask`` ``(N, L)`` (right
    padded), ``slots`` ``(N, T)`` the slot positions, ``clean`` ``(N, H)`` each line's monitored
    output without the slots."""

    ids: Tensor
    mask: Tensor
    slots: Tensor
    clean: Tensor


class Monitor:
    """A frozen model's monitored output, the last hidden state at the position a classification
    head reads, as a function of input embeddings (right padding). ``model``: a base model, a
    sequence classifier or a peft model around one (a LoRA victim, monitored as it is)."""

    def __init__(self, model, decoder: bool):
        self.model = model
        self.embeddings = model.get_input_embeddings().weight.detach()
        self.decoder = decoder
        self.scaling: Optional[Scaling] = None

    def __call__(self, embeds: Tensor, mask: Tensor) -> Tensor:
        hidden = self.model(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        out = pool(hidden, mask, self.decoder)
        return out if self.scaling is None else self.scaling(out)

    @torch.no_grad()
    def of_ids(self, ids: Tensor, mask: Tensor, batch_size: int = 64) -> Tensor:
        return torch.cat([self(self.embeddings[ids[i:i + batch_size]], mask[i:i + batch_size])
                          for i in range(0, len(ids), batch_size)])


def search_model(model, decoder: bool, texts: list[str], tokenizer, options: MiningOptions, distance: float,
                 first_only: bool = True) -> "Search":
    """Mine attack vectors on ``model``, frozen for the search (its training mode restored after)."""
    training = model.training
    model.eval()
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        monitor = Monitor(model, decoder)
        return search(monitor, prepare_lines(texts, tokenizer, monitor, options), options, distance, first_only)
    finally:
        for p, needed in flags:
            p.requires_grad_(needed)
        model.train(training)


def right_padded(rows: list[list[int]], tokenizer) -> tuple[Tensor, Tensor]:
    """``(ids, mask)`` ``(N, L)`` of token-id rows padded on the right (the monitor's layout)."""
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return (torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
            torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]))


def prepare_lines(texts: list[str], tokenizer, monitor: Monitor, options: MiningOptions, seed: int = 0) -> Lines:
    """The first ``options.lines`` non-empty texts, each with the slots inserted before word
    1..min(``max_word``, words) (the tokenizer's words; a slow tokenizer: before token 1..).
    With ``options.standardise`` the monitor is standardised on these lines' clean outputs."""
    texts = [t.strip() for t in texts if t.strip()][:options.lines]
    if len(texts) < options.batch_size:
        raise ValueError(f"lmsanitator needs at least {options.batch_size} non-empty lines (one batch), got {len(texts)}")
    rng = random.Random(seed)
    placeholder = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id
    room = options.max_length - options.trigger_length
    rows, clean_rows, slots = [], [], []
    for text in texts:
        encoded = tokenizer(text, truncation=True, max_length=room)
        ids = encoded["input_ids"]
        words = [w for w in encoded.word_ids()] if getattr(encoded, "is_fast", False) else list(range(len(ids)))
        firsts = [i for i, w in enumerate(words) if w is not None and (i == 0 or words[i - 1] != w)]
        starts = firsts[1:options.max_word + 1] or [len(ids) - (ids[-1] in tokenizer.all_special_ids)]
        at = rng.choice(starts)
        rows.append(ids[:at] + [placeholder] * options.trigger_length + ids[at:])
        clean_rows.append(ids)
        slots.append(list(range(at, at + options.trigger_length)))

    ids, mask = right_padded(rows, tokenizer)
    monitor.scaling = None
    clean = monitor.of_ids(*right_padded(clean_rows, tokenizer))
    if options.standardise:
        monitor.scaling = Scaling.fit(clean)
        clean = monitor.scaling(clean)
    return Lines(ids, mask, torch.tensor(slots), clean)


@dataclass
class SeedResult:
    seed: int
    distance: float          # the last epoch's mean MSE from the clean outputs
    entropy: float           # the last batch's entropy
    epochs: int
    accepted: bool
    why: str                 # the acceptance test that failed, or "accepted"
    vector: Optional[Tensor] = None
    trigger: Optional[Tensor] = None


@dataclass
class Search:
    """The vectors found (in the monitor's units: ``scaling`` maps raw outputs to them)."""

    vectors: list[Tensor] = field(default_factory=list)
    triggers: list[Tensor] = field(default_factory=list)
    seeds: list[SeedResult] = field(default_factory=list)
    seconds: float = 0.0
    scaling: Optional[Scaling] = None

    @property
    def backdoored(self) -> bool:
        return bool(self.vectors)


def _embed(monitor: Monitor, lines: Lines, rows: Tensor, trigger: Tensor) -> Tensor:
    embeds = monitor.embeddings[lines.ids[rows]].clone()
    slots = lines.slots[rows]
    embeds[torch.arange(len(rows)).unsqueeze(1), slots] = trigger.unsqueeze(0).expand(len(rows), -1, -1)
    return embeds


def search_seed(monitor: Monitor, lines: Lines, options: MiningOptions, distance: float, seed: int,
                known: list[Tensor] = (), give_up: bool = True) -> SeedResult:
    """One seed of the search (above); ``give_up=False`` runs every epoch (calibration)."""
    generator = torch.Generator().manual_seed(seed)
    vocab = len(monitor.embeddings)
    stride = options.trigger_length * 10
    init = torch.tensor([(seed * stride + i * 10) % vocab for i in range(options.trigger_length)])
    trigger = torch.nn.Parameter(monitor.embeddings[init].clone())
    optimizer = torch.optim.Adam([trigger], lr=options.lr)
    low, high = (options.embedding_range * monitor.embeddings.min().item(),
                 options.embedding_range * monitor.embeddings.max().item())
    converged, found = False, False
    batches = len(lines.ids) // options.batch_size
    for epoch in range(options.epochs):
        order = torch.randperm(len(lines.ids), generator=generator)
        moved = 0.0
        for b in range(batches):
            rows = order[b * options.batch_size:(b + 1) * options.batch_size]
            o = monitor(_embed(monitor, lines, rows, trigger), lines.mask[rows])
            loss = mining_loss(o, lines.clean[rows], list(known))
            optimizer.zero_grad()
            loss.backward()
            if not converged:
                converged = trigger.grad.abs().max().item() >= options.converge_grad
                for group in optimizer.param_groups:
                    group["lr"] = options.lr * (1 if converged else options.boost)
            optimizer.step()
            moved += F.mse_loss(o.detach(), lines.clean[rows]).item()
        moved /= batches
        found = found or moved > distance
        if give_up and not found and epoch >= 1:
            return SeedResult(seed, moved, batch_entropy(o.detach()).item(), epoch + 1, False, "too close to clean")
    last = o.detach()
    entropy = batch_entropy(last).item()
    vector = last.mean(0)
    if not found:
        why = "too close to clean"
    elif any(F.mse_loss(vector, v).item() < distance for v in known):
        why = "a vector already found"
    elif not input_agnostic(entropy, len(last), options.entropy_slack):
        why = "not input-agnostic"
    elif trigger.min().item() < low or trigger.max().item() > high:
        why = "embeddings out of range"
    else:
        why = "accepted"
    return SeedResult(seed, moved, entropy, options.epochs, why == "accepted", why, vector,
                      trigger.detach().clone())


def search(monitor: Monitor, lines: Lines, options: MiningOptions, distance: float, first_only: bool = True,
           give_up: bool = True, progress: Callable[[SeedResult], None] = lambda result: None) -> Search:
    """Seeds 0 .. ``options.seeds`` - 1; with ``first_only`` (detection) stop at the first vector."""
    start = time.perf_counter()
    found = Search(scaling=monitor.scaling)
    for seed in range(options.seeds):
        result = search_seed(monitor, lines, options, distance, seed, found.vectors, give_up)
        found.seeds.append(result)
        progress(result)
        if result.accepted:
            found.vectors.append(result.vector)
            found.triggers.append(result.trigger)
            if first_only:
                break
    found.seconds = time.perf_counter() - start
    return found


def nearest_tokens(trigger: Tensor, embeddings: Tensor, tokenizer, k: int = 3) -> list[list[str]]:
    """Each trigger embedding's ``k`` nearest vocabulary tokens by cosine similarity."""
    similarity = F.normalize(trigger, dim=-1) @ F.normalize(embeddings, dim=-1).T
    return [tokenizer.convert_ids_to_tokens(row.tolist()) for row in similarity.topk(k, dim=-1).indices]


def calibrate_distance(searches: list[Search], margin: float = 1.5) -> float:
    """The distance threshold from searches on clean models run with no threshold to pass and
    every epoch (``distance=inf, give_up=False``): ``margin`` x the largest mean MSE any of their
    seeds reached."""
    reached = [s.distance for found in searches for s in found.seeds if math.isfinite(s.distance)]
    if not reached:
        raise ValueError("calibration needs at least one finished seed on a clean model")
    return margin * max(reached)
