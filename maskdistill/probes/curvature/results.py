"""What the Hessian functions return (paper Sec. 4, Fig. 7): the top eigenpairs, the trace with its
standard error, and the spectral density's quadrature nodes and weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

import numpy as np
import torch

from maskdistill.probes.curvature.quadrature import density_on_grid


@dataclass
class EigenResult:
    eigenvalues: List[float]  # sorted by magnitude (descending), sign kept
    eigenvectors: List[List[torch.Tensor]]  # unit norm, each a list shaped like the parameters
    products: int  # Hessian-vector products used
    converged: bool
    method: str
    param_names: List[str] = field(default_factory=list)
    residuals: List[float] = field(default_factory=list)  # an eigenvalue of H lies within residuals[i]
    budget: int = 0  # the most products the solver was allowed
    krylov: Optional[Any] = field(default=None, repr=False)  # the Lanczos run, for a deflated trace

    @property
    def relative_residuals(self) -> List[float]:
        return [r / max(abs(v), 1e-300) for r, v in zip(self.residuals, self.eigenvalues)]


@dataclass
class TraceResult:
    estimate: float
    se: float  # standard error (0 for the exact trace)
    products: int
    samples: int
    converged: bool
    method: str  # "hutchinson" | "hutchinson+deflation" | "exact"

    @property
    def relative_se(self) -> float:
        """The tolerance reached: SE / |estimate| (what the "se" stopping rule compares with tol)."""
        return self.se / max(abs(self.estimate), 1e-300)

    @property
    def ci95(self) -> tuple:
        return self.estimate - 1.96 * self.se, self.estimate + 1.96 * self.se


@dataclass
class DensityResult:
    nodes: List[np.ndarray]  # Ritz values per run
    weights: List[np.ndarray]  # quadrature weights per run (each sums to 1)
    products: int

    def on_grid(self, num_points: int = 1000, sigma_squared: float = 1e-5) -> tuple:
        """(eigenvalue grid, density), Gaussian-broadened as PyHessian plots it."""
        return density_on_grid(self.nodes, self.weights, num_points, sigma_squared)


__all__ = ["DensityResult", "EigenResult", "TraceResult"]
