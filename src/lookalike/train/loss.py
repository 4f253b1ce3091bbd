"""Contrastive losses (NT-Xent, margin), the KoLeo spreading term on a batch, and a
cross-batch memory of negatives."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lookalike.model import Preprocess, to_tensor
from lookalike.train.config import TrainConfig


def _exclusion_mask(
    sources: torch.Tensor, tiles: torch.Tensor, shots: torch.Tensor | None = None
) -> torch.Tensor:
    """True where two pictures overlap in pixels (a whole photo and its own tile), or may
    show one subject in one place (`shots`, -1 = unknown)."""
    same = sources[:, None] == sources[None, :]
    one_whole = ~(tiles[:, None] & tiles[None, :])
    excluded = same & one_whole
    if shots is not None:
        excluded |= (shots[:, None] == shots[None, :]) & (shots[:, None] >= 0)
    return excluded


def ntxent_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    excluded: torch.Tensor,
    temperature: float,
    memory: torch.Tensor | None = None,
    memory_excluded: torch.Tensor | None = None,
) -> torch.Tensor:
    """Contrastive InfoNCE / NT-Xent over 2N views: each view's partner is its positive,
    every other picture in the batch a negative; `excluded` (N x N) pairs are ignored.
    `memory` (M x D, no gradient) adds earlier batches' pictures as negatives, except
    where `memory_excluded` (N x M) is True."""
    n = a.shape[0]
    z = torch.cat([a, b])
    logits = z @ z.T / temperature
    block = excluded.repeat(2, 2)
    eye = torch.eye(2 * n, dtype=torch.bool)
    partner = torch.arange(2 * n).roll(n)
    mask = block | eye
    mask[torch.arange(2 * n), partner] = False
    logits = logits.masked_fill(mask, float("-inf"))
    if memory is not None and len(memory):
        extra = z @ memory.T / temperature
        if memory_excluded is not None:
            extra = extra.masked_fill(memory_excluded.repeat(2, 1), float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    return F.cross_entropy(logits, partner)


class NegativeMemory:
    """A queue of the last `size` pictures' embeddings (detached), used as extra negatives
    (cross-batch memory, as the ISC 2021 descriptor-track winner trained): the batch holds
    ~200 pictures, the tail of the negative distribution needs thousands."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.vectors = torch.zeros(0)
        self.sources = torch.zeros(0, dtype=torch.long)
        self.shots = torch.zeros(0, dtype=torch.long)

    def excluded(self, sources: torch.Tensor, shots: torch.Tensor | None) -> torch.Tensor:
        """(N x M) True where a memory entry may show the same picture or subject: the
        same source photo (its tiles included), or the same shot."""
        out = sources[:, None] == self.sources[None, :]
        if shots is not None:
            out |= (shots[:, None] == self.shots[None, :]) & (shots[:, None] >= 0)
        return out

    def push(self, vectors: torch.Tensor, sources: torch.Tensor, shots: torch.Tensor) -> None:
        """Add a batch's embeddings; the oldest go beyond `size`."""
        self.vectors = torch.cat([vectors.detach(), self.vectors])[: self.size]
        self.sources = torch.cat([sources, self.sources])[: self.size]
        self.shots = torch.cat([shots, self.shots])[: self.size]


def margin_contrastive_loss(
    a: torch.Tensor, b: torch.Tensor, excluded: torch.Tensor, margin: float
) -> torch.Tensor:
    """The classic contrastive loss (Hadsell et al. 2006) on every pair in the batch:
    positives pulled together (d^2), negatives pushed beyond `margin` ((m - d)^2)."""
    n = a.shape[0]
    z = torch.cat([a, b])
    dist = torch.cdist(z, z).clamp_min(1e-9)
    partner = torch.arange(2 * n).roll(n)
    positive = torch.zeros(2 * n, 2 * n, dtype=torch.bool)
    positive[torch.arange(2 * n), partner] = True
    ignore = excluded.repeat(2, 2) | torch.eye(2 * n, dtype=torch.bool)
    negative = ~positive & ~ignore
    pos_term = dist[positive].pow(2).mean()
    neg_term = F.relu(margin - dist[negative]).pow(2)
    hard = neg_term[neg_term > 0]
    return pos_term + (hard.mean() if hard.numel() else neg_term.sum())


def koleo_loss(z: torch.Tensor) -> torch.Tensor:
    """Kozachenko-Leonenko entropy regulariser: spread embeddings over the sphere."""
    with torch.no_grad():
        sims = z @ z.T
        sims.fill_diagonal_(-2.0)
        nearest = sims.argmax(dim=1)
    distances = (z - z[nearest]).norm(dim=1)
    return -torch.log(distances + 1e-4).mean()


def _loss(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    pre: Preprocess,
    memory: NegativeMemory | None = None,
) -> torch.Tensor:
    """The batch's loss; with `memory`, its negatives join (NT-Xent) and the batch's
    anchors are pushed into it afterwards."""
    a = model(to_tensor(batch["anchors"].numpy(), pre))
    b = model(to_tensor(batch["positives"].numpy(), pre))
    shots = batch.get("shots")
    excluded = _exclusion_mask(batch["sources"], batch["tiles"], shots)
    if config.loss == "margin":
        main = margin_contrastive_loss(a, b, excluded, config.margin)
    elif memory is not None:
        main = ntxent_loss(
            a,
            b,
            excluded,
            config.temperature,
            memory.vectors,
            memory.excluded(batch["sources"], shots),
        )
        unknown = torch.full_like(batch["sources"], -1)
        memory.push(a, batch["sources"], shots if shots is not None else unknown)
    else:
        main = ntxent_loss(a, b, excluded, config.temperature)
    if config.koleo_weight:
        main = main + config.koleo_weight * 0.5 * (koleo_loss(a) + koleo_loss(b))
    return main
