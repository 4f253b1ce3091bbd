"""Contrastive losses (NT-Xent, margin) and the KoLeo spreading term on a batch."""

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
    a: torch.Tensor, b: torch.Tensor, excluded: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Contrastive InfoNCE / NT-Xent over 2N views: each view's partner is its positive,
    every other picture in the batch a negative; `excluded` (N x N) pairs are ignored."""
    n = a.shape[0]
    z = torch.cat([a, b])
    logits = z @ z.T / temperature
    block = excluded.repeat(2, 2)
    eye = torch.eye(2 * n, dtype=torch.bool)
    partner = torch.arange(2 * n).roll(n)
    mask = block | eye
    mask[torch.arange(2 * n), partner] = False
    logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, partner)


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
    model: nn.Module, batch: dict[str, torch.Tensor], config: TrainConfig, pre: Preprocess
) -> torch.Tensor:
    a = model(to_tensor(batch["anchors"].numpy(), pre))
    b = model(to_tensor(batch["positives"].numpy(), pre))
    excluded = _exclusion_mask(batch["sources"], batch["tiles"], batch.get("shots"))
    if config.loss == "margin":
        main = margin_contrastive_loss(a, b, excluded, config.margin)
    else:
        main = ntxent_loss(a, b, excluded, config.temperature)
    if config.koleo_weight:
        main = main + config.koleo_weight * 0.5 * (koleo_loss(a) + koleo_loss(b))
    return main
