"""The codebook of BEiT v2's VQ-KD tokenizer (paper Sec. 5 and App. B, Fig. 9; Table 1 "VQ-KD":
8192 codes of dimension 32): ℓ2-normalised codes, cosine-similarity lookup, updates by exponential
moving average instead of gradients, k-means initialisation and restart of dead codes.

With z the ℓ2-normalised encoder output of a token, the code is c = argmax_k <z, e_k> (nearest by
cosine). After each training forward, every code k that received n_k > 0 tokens moves towards their
normalised mean and is re-normalised (BEiT v2's "norm EMA"):

    e_k <- l2norm(γ e_k + (1 - γ) l2norm(mean_{i: c_i = k} z_i)),     N_k <- γ N_k + (1 - γ) n_k

Codes whose usage N_k (an EMA of tokens per step) falls under ``dead_threshold`` are restarted at
encoder outputs of the current batch, so the codebook cannot collapse onto a few codes. Gradients
reach the encoder through the straight-through estimator, and a commitment loss keeps z near its
code. Under DDP the statistics are summed over processes, so every process holds the same codebook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn


def _dist() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def straight_through(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The value of ``q`` with the gradient of ``z``: d out / d z = identity, ``q`` gets none."""
    return z + (q - z).detach()


def kmeans_plus_plus(z: torch.Tensor, k: int) -> torch.Tensor:
    """k starting centres among the unit rows of z (M, d), each drawn with probability proportional
    to its squared cosine distance to the nearest centre so far (k-means++): spread-out starts,
    so that two codes rarely begin in one cluster."""
    m = z.shape[0]
    chosen = torch.empty(k, dtype=torch.long, device=z.device)
    chosen[0] = torch.randint(m, (1,), device=z.device)
    dist = (1 - z @ z[chosen[0]]).clamp_min(0)  # (M,)
    for i in range(1, k):
        w = dist.square()
        # All points already are centres (M < k, or duplicates): repeat uniformly drawn rows.
        nxt = torch.multinomial(w, 1) if bool(w.sum() > 0) else torch.randint(m, (1,), device=z.device)
        chosen[i] = nxt[0]
        dist = torch.minimum(dist, (1 - z @ z[nxt[0]]).clamp_min(0))
    return z[chosen].clone()


def spherical_kmeans(z: torch.Tensor, k: int, iters: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """k-means on the unit sphere (cosine assignment, normalised means), started by k-means++:
    z (M, d) unit rows -> centres (k, d) and the number of rows assigned to each (k,). Centres
    that end up empty (e.g. M < k) keep their start and are restarted later as dead codes."""
    centres = kmeans_plus_plus(z, k)
    counts = torch.zeros(k, device=z.device)
    for _ in range(max(iters, 1)):
        assign = (z @ centres.T).argmax(1)  # (M,)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centres).index_add_(0, assign, z)
        centres = torch.where(counts[:, None] > 0, F.normalize(sums, dim=1), centres)
    return centres, counts


@dataclass(frozen=True)
class CodebookOptions:
    """How the codebook learns: EMA decay of the code statistics, weight of the commitment loss,
    k-means iterations of the first batch, and the usage N_k under which a code is restarted."""

    decay: float = 0.99
    commitment: float = 1.0
    kmeans_iters: int = 10
    dead_threshold: float = 1.0


class EMACodebook(nn.Module):
    """K unit codes of dimension d. ``forward(z)`` -> (straight-through codes, indices, commitment
    loss); in training mode it also updates the codebook (no gradient ever reaches the codes)."""

    def __init__(self, num_codes: int, dim: int, options: Optional[CodebookOptions] = None) -> None:
        super().__init__()
        options = options or CodebookOptions()
        decay, commitment = options.decay, options.commitment
        kmeans_iters, dead_threshold = options.kmeans_iters, options.dead_threshold
        if num_codes < 2 or dim < 1:
            raise ValueError(f"a codebook needs at least 2 codes of dimension >= 1 (got {num_codes} x {dim}).")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"codebook decay={decay} must be in [0, 1).")
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.commitment = decay, commitment
        self.kmeans_iters, self.dead_threshold = kmeans_iters, dead_threshold
        self.register_buffer("embed", F.normalize(torch.randn(num_codes, dim), dim=1))  # (K, d)
        self.register_buffer("cluster_size", torch.zeros(num_codes))  # N_k: EMA of tokens per step
        self.register_buffer("initted", torch.tensor(False))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # codes restarted so far
        # Codes to restart at the next training step whatever their usage (after a collapse report);
        # saved, so that a run resumed from the checkpoint after the report restarts them too.
        self.register_buffer("pending", torch.zeros(num_codes, dtype=torch.bool))
        # Tokens per code since the last health report (a metric only: not saved).
        self.register_buffer("window_counts", torch.zeros(num_codes), persistent=False)

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z (M, d) unit rows -> index of the code with the highest cosine similarity (M,)."""
        return (z @ self.embed.T).argmax(1)

    def forward(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (..., d) -> codes with straight-through gradient (..., d) float32, indices (...), loss."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"codebook of dimension {self.dim} got vectors of dimension {z.shape[-1]}.")
        with torch.autocast(z.device.type, enabled=False):  # argmax and EMA in float32
            flat = F.normalize(z.float().reshape(-1, self.dim), dim=1)  # (M, d)
            if self.training and not bool(self.initted):
                self.kmeans_init(flat.detach())
            idx = self.nearest(flat.detach())
            q = self.embed[idx]  # the codes as they were for this forward
            loss = self.commitment * F.mse_loss(flat, q)
            if self.training:
                self.update(flat.detach(), idx)
            out = straight_through(flat, q)
        return out.view(*z.shape[:-1], self.dim), idx.view(z.shape[:-1]), loss

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor) -> None:
        """Codes <- spherical k-means of the first training batch (process 0's, broadcast)."""
        centres, counts = spherical_kmeans(z, self.num_codes, self.kmeans_iters)
        if _dist():
            tdist.broadcast(centres, 0)
            tdist.broadcast(counts, 0)
        self.embed.copy_(centres)
        self.cluster_size.copy_(counts * (tdist.get_world_size() if _dist() else 1))
        self.initted.fill_(True)

    @torch.no_grad()
    def update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        """The norm-EMA step of the module docstring, then the restart of dead codes."""
        counts = torch.bincount(idx, minlength=self.num_codes).float()  # n_k (K,)
        sums = torch.zeros_like(self.embed).index_add_(0, idx, z)  # (K, d)
        if _dist():
            tdist.all_reduce(counts)
            tdist.all_reduce(sums)
        g = self.decay
        self.window_counts += counts
        self.cluster_size.mul_(g).add_(counts, alpha=1 - g)
        means = F.normalize(sums / counts.clamp_min(1)[:, None], dim=1)
        moved = F.normalize(g * self.embed + (1 - g) * means, dim=1)
        self.embed.copy_(torch.where(counts[:, None] > 0, moved, self.embed))
        self.restart_dead(z, float(counts.sum()))

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor, tokens_per_step: float) -> int:
        """Codes with N_k < dead_threshold (or marked by ``mark_unused_dead``) <- random encoder
        outputs of this batch; their usage is reset to the average (tokens_per_step / K), a grace
        period before they can die again."""
        dead = (self.cluster_size < self.dead_threshold) | self.pending  # (K,)
        self.pending.zero_()
        n = int(dead.sum())
        if n == 0:
            return 0
        new = z[torch.randint(z.shape[0], (n,), device=z.device)]  # (n, d)
        if _dist():  # every process must restart with the same vectors
            tdist.broadcast(new, 0)
        self.embed[dead] = new
        self.cluster_size[dead] = max(tokens_per_step / self.num_codes, self.dead_threshold)
        self.restarts += n
        return n

    @torch.no_grad()
    def mark_unused_dead(self) -> int:
        """Codes that received no token since the last report are restarted at the next training
        step; returns how many. Used when the codebook collapses."""
        unused = self.window_counts == 0
        self.pending |= unused
        return int(unused.sum())

    @torch.no_grad()
    def health(self) -> Dict[str, float]:
        """Codebook health since the last ``reset_window``: usage (share of codes that received a
        token), perplexity of the code distribution (K when uniform, 1 when collapsed), dead codes
        (N_k < dead_threshold), restarts so far."""
        out = codebook_stats(self.window_counts, self.cluster_size, self.dead_threshold)
        out["restarts"] = float(self.restarts)
        return out

    @torch.no_grad()
    def reset_window(self) -> None:
        """Start a new report window (usage is counted from here)."""
        self.window_counts.zero_()


def codebook_stats(counts: torch.Tensor, cluster_size: torch.Tensor, dead_threshold: float) -> Dict[str, float]:
    """counts (K,) tokens per code -> usage share, perplexity exp(H(p)), dead codes, tokens seen."""
    total = float(counts.sum())
    p = counts / max(total, 1e-12)
    entropy = -float((p * p.clamp_min(1e-12).log()).sum())
    return {
        "usage": float((counts > 0).float().mean()),
        "perplexity": math.exp(entropy) if total > 0 else 0.0,
        "dead_codes": float((cluster_size < dead_threshold).sum()),
        "tokens": total,
    }


__all__ = [
    "CodebookOptions",
    "EMACodebook",
    "codebook_stats",
    "kmeans_plus_plus",
    "spherical_kmeans",
    "straight_through",
]
