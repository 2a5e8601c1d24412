"""Two-dimensional loss landscapes (paper Sec. 4, Fig. 7a/b/d/e): the
loss on θ + α v₁ + β v₂ over a grid (21×21 on [−0.5, 0.5]² here; the ``loss_landscape_2d`` probe uses 11×11).

Directions: the unit top-2 Hessian eigenvectors (``"hessian"``, the paper's choice; no normalisation,
which would break the link between the curvature along v₁ and λ₁), or Gaussian directions with
per-row filter normalisation (``"random"``, Li et al. 2018: each row of a weight — the slice along
dimension 0, an output unit or a conv filter — gets the norm of the same row of θ; biases and norm
weights, the 1-D parameters, are zeroed), or any two directions shaped like the selected parameters.

Parameters are restored bitwise afterwards (copied back from a saved copy, not subtracted), also if
the loss raises. Eval mode and eager attention as for the Hessian probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from maskdistill.models.modes import curvature_mode
from maskdistill.probes.curvature.hessian import top_eigenvalues
from maskdistill.probes.curvature.hvp import HessianOperator
from maskdistill.probes.curvature.operands import Batches, LossFn, ParamFilter, select_params

Direction = Sequence[torch.Tensor]
Directions = Union[str, Sequence[Direction]]


@dataclass
class Landscape:
    alpha: np.ndarray  # (G,) coefficients of v1
    beta: np.ndarray  # (G,) coefficients of v2
    loss: np.ndarray  # (G, G): loss[i, j] at θ + alpha[i]·v1 + beta[j]·v2
    directions: str  # "hessian" | "random" | "given"
    eigenvalues: Optional[List[float]] = None  # λ1, λ2 when the directions are eigenvectors
    products: int = 0  # Hessian-vector products spent on the directions

    def centre(self) -> Dict[str, Any]:
        """The loss at θ (the grid's centre, odd grids) and whether no grid point is lower."""
        if len(self.alpha) % 2 == 0:
            return {"centre_loss": None, "centre_is_minimum": None, "grid_min_loss": float(np.min(self.loss))}
        c = len(self.alpha) // 2
        at = float(self.loss[c, c])
        return {
            "centre_loss": at,
            "centre_is_minimum": bool(at <= np.min(self.loss)),
            "grid_min_loss": float(np.min(self.loss)),
        }

    def to_frame(self) -> pd.DataFrame:
        a, b = np.meshgrid(self.alpha, self.beta, indexing="ij")
        return pd.DataFrame({"alpha": a.ravel(), "beta": b.ravel(), "metric": "loss", "value": self.loss.ravel()})


def random_directions(
    model: nn.Module, params: ParamFilter = None, seed: int = 0, count: int = 2, filter_normalise: bool = True
) -> List[List[torch.Tensor]]:
    """``count`` Gaussian directions shaped like the selected parameters, filter-normalised per row."""
    named = select_params(model, params)
    gen = torch.Generator(device=named[0][1].device).manual_seed(int(seed))
    out = []
    for _ in range(count):
        d = []
        for _, p in named:
            r = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
            if filter_normalise:
                if p.ndim <= 1:
                    r.zero_()  # biases and norm weights stay put (Li et al.'s "ignore biasbn")
                else:
                    rows, theta = r.reshape(p.shape[0], -1), p.detach().reshape(p.shape[0], -1)
                    rows.mul_(theta.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True).clamp_min(1e-12))
            d.append(r)
        out.append(d)
    return out


def _check_direction(d: Direction, params: List[nn.Parameter], which: str) -> List[torch.Tensor]:
    d = list(d)
    if len(d) != len(params) or any(t.shape != p.shape for t, p in zip(d, params)):
        raise ValueError(
            f"direction {which} must be a list of {len(params)} tensors shaped like the selected "
            f"parameters (the same parameter filter as the probe)."
        )
    return [t.detach().to(p.device, p.dtype) for t, p in zip(d, params)]


def loss_landscape_2d(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batches,
    directions: Directions = "hessian",
    grid: int = 21,
    span: float = 0.5,
    params: ParamFilter = None,
    seed: int = 0,
    tol: float = 1e-3,
) -> Landscape:
    """Loss on θ + α v₁ + β v₂ for α, β on ``grid`` points of [−span, span]."""
    if grid < 1 or span < 0:
        raise ValueError(f"grid={grid}, span={span}: need grid ≥ 1 and span ≥ 0.")
    named = select_params(model, params)
    ps = [p for _, p in named]
    eigs, products, kind = None, 0, directions if isinstance(directions, str) else "given"
    if directions == "hessian":
        res = top_eigenvalues(model, loss_fn, batches, k=2, tol=tol, params=params, seed=seed)
        dirs, eigs, products = res.eigenvectors, res.eigenvalues, res.products
    elif directions == "random":
        dirs = random_directions(model, params, seed)
    elif isinstance(directions, str):
        raise ValueError(f"directions={directions!r}; use 'hessian', 'random' or a pair of directions.")
    else:
        if len(directions) != 2:
            raise ValueError(f"give two directions (v1, v2), got {len(directions)}.")
        dirs = directions
    d1, d2 = _check_direction(dirs[0], ps, "v1"), _check_direction(dirs[1], ps, "v2")
    # symmetric by construction: with an odd grid the middle coefficient is exactly 0 (θ itself)
    coef = (np.arange(grid) - (grid - 1) / 2) * (2 * span / (grid - 1)) if grid > 1 else np.zeros(1)
    surface = np.empty((grid, grid))
    saved = [p.detach().clone() for p in ps]
    with curvature_mode(model):
        op = HessianOperator(model, loss_fn, batches, params)
        try:
            with torch.no_grad():
                for i, a in enumerate(coef):
                    for j, b in enumerate(coef):
                        for p, t0, u, w in zip(ps, saved, d1, d2):
                            if a == 0 and b == 0:
                                p.copy_(t0)  # the centre is θ itself, bit for bit
                            else:
                                p.copy_(t0 + float(a) * u + float(b) * w)
                        surface[i, j] = op.loss()
        finally:
            with torch.no_grad():
                for p, t0 in zip(ps, saved):
                    p.copy_(t0)
    return Landscape(coef.copy(), coef.copy(), surface, kind, eigs, products)


__all__ = ["Landscape", "loss_landscape_2d", "random_directions"]

# The ``loss_landscape_2d`` probe is registered with the Hessian probes (one context interface).
