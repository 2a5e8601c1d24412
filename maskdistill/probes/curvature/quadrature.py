"""The spectral density of a symmetric operator (paper Sec. 4; PyHessian's eigenvalue density, Yao
et al. 2020): stochastic Lanczos quadrature nodes and weights, and their Gaussian-broadened density
on a grid.

All randomness comes from a caller's ``torch.Generator``: the global RNG is never touched.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
import torch

from maskdistill.probes.curvature.lanczos import Operator, lanczos, random_unit


def slq(op: Operator, steps: int, runs: int, gen: torch.Generator) -> Tuple[List[np.ndarray], List[np.ndarray], int]:
    """Stochastic Lanczos quadrature: per run, the Ritz values (nodes) and the squared first
    components of T's eigenvectors (weights, summing to 1) from a Rademacher start."""
    nodes, weights, products = [], [], 0
    for _ in range(runs):
        kr = lanczos(op.matvec, random_unit(op.n, gen, op.dtype, op.device, rademacher=True), steps, gen, restart=False)
        products += kr.products
        theta, s = np.linalg.eigh(kr.tridiagonal())
        nodes.append(theta)
        weights.append(s[0, :] ** 2)
    return nodes, weights, products


def density_on_grid(
    nodes: Sequence[np.ndarray],
    weights: Sequence[np.ndarray],
    num_points: int = 1000,
    sigma_squared: float = 1e-5,
    overhead: float = 0.01,
) -> Tuple[np.ndarray, np.ndarray]:
    """Gaussian-broadened spectral density on a grid, normalised to integrate to 1. PyHessian's
    convention (so plots compare): the Gaussian variance is ``sigma_squared·max(1, λmax−λmin)`` and the
    grid spans [λmin − overhead, λmax + overhead]."""
    allx = np.concatenate([np.asarray(x, dtype=np.float64) for x in nodes])
    lo, hi = allx.min() - overhead, allx.max() + overhead
    grid = np.linspace(lo, hi, num_points)
    var = sigma_squared * max(1.0, hi - lo)
    dens = np.zeros_like(grid)
    for x, w in zip(nodes, weights):
        g = np.exp(-((grid[:, None] - np.asarray(x)[None, :]) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
        dens += g @ np.asarray(w, dtype=np.float64)
    dens /= len(nodes)
    area = np.trapezoid(dens, grid) if hasattr(np, "trapezoid") else np.trapz(dens, grid)
    return grid, dens / area if area > 0 else dens


__all__ = ["density_on_grid", "slq"]
