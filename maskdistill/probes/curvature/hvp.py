"""Hessian-vector products of the mean loss over a fixed list of batches (paper Sec. 4, Eq. (3):
Hv = ∂(gᵀv)/∂θ, Pearlmutter's trick).

:class:`HessianOperator` is the linear map v ↦ Hv on flat vectors over the selected parameters (a
parameter filter restricts H to the diagonal block of e.g. one transformer block). Two ways:

- ``"reverse"`` (double backprop): the gradient graph (``create_graph=True``) is built once and every
  product is one more backward pass through it (``retain_graph=True``). Iterative methods call the
  product tens of times on the same batches, so building the first-order graph once pays; with
  ``cache_graph=False`` it is rebuilt per product and only one batch's graph is alive at a time. By
  default the graph is kept when it fits: the first batch's graph is measured, scaled to this
  process's images and kept if it takes at most a share of the free memory (graph_memory.py);
- ``"forward"`` (forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad``): a fresh forward
  and backward with dual numbers per product, no graph kept between products.

The loss over several batches is the sample-weighted mean Σ_b n_b·L_b / Σ_b n_b, which is the mean
loss over all samples for a mean-reduced criterion (PyHessian weights its data loader the same way).
The operator never writes ``.grad`` and never changes a parameter. Run it inside
:func:`maskdistill.models.modes.curvature_mode` (the public functions in ``hessian.py`` do).

Data-parallel (torchrun): given :class:`~maskdistill.parallel.shards.RankBatches` (this rank's
images and the process group), the weights count every rank's images and the loss, gradient and
products are all-reduced sums, so every rank holds the same Hv and the solvers above (Lanczos,
Hutchinson, quadrature, the landscape) run in lock-step with the same seeded vectors.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from maskdistill.models.device import free_memory
from maskdistill.parallel.collectives import sum_across, sum_floats
from maskdistill.parallel.group import SINGLE, Dist
from maskdistill.probes.curvature.graph_memory import SavedBytes, graph_fits
from maskdistill.probes.curvature.operands import (
    Batches,
    LossFn,
    ParamFilter,
    check_batches,
    scalar_loss,
    select_params,
    size_of,
)

METHODS = ("reverse", "forward")


class HessianOperator:
    """v ↦ Hv for flat vectors of length ``n`` (the selected parameters, concatenated in order)."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Batches,
        params: ParamFilter = None,
        method: str = "reverse",
        cache_graph: Optional[bool] = None,
    ):
        if method not in METHODS:
            raise ValueError(f"method={method!r}; choose one of {METHODS}.")
        self.world: Dist = getattr(batches, "world", SINGLE)
        self.model, self.loss_fn, self.method = model, loss_fn, method
        self.batches = check_batches(batches, allow_empty=self.world.enabled)
        local = sum(size_of(x) for x, _ in self.batches)
        # None: keep the graph if it fits (decided when the first product builds it)
        self._fit_graph = cache_graph is None and len(self.batches) > 1
        self.cache_graph = True if cache_graph is None else bool(cache_graph)
        self.local_images = local
        self.graph_bytes: Optional[float] = None  # measured: the kept graph of this process's images
        total = sum_floats([float(local)], self.world)[0]  # every rank's images weigh the same
        if total == 0:
            raise ValueError("no rank holds an image of the Hessian's batches; give the probe images.")
        self.weights = [size_of(x) / total for x, _ in self.batches]
        named = select_params(model, params)
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.n = sum(self.numels)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.products = 0
        self._graph: Optional[List[Optional[torch.Tensor]]] = None
        self._batched_ok = True

    # -- flat vectors <-> lists shaped like the parameters ------------------------------------------
    def unflatten(self, v: torch.Tensor) -> List[torch.Tensor]:
        return [c.view(s) for c, s in zip(torch.split(v, self.numels), self.shapes)]

    def flatten(self, vs: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
        return torch.cat(
            [
                (torch.zeros(n, dtype=self.dtype, device=self.device) if t is None else t.reshape(-1))
                for t, n in zip(vs, self.numels)
            ]
        )

    # -- first order ----------------------------------------------------------------------------------
    def _batch_loss(self, x: torch.Tensor, y: torch.Tensor, w: float) -> torch.Tensor:
        return scalar_loss(self.loss_fn(self.model(x), y)) * w

    def loss(self) -> float:
        with torch.no_grad():
            mine = float(sum(self._batch_loss(x, y, w).double() for (x, y), w in zip(self.batches, self.weights)))
        return sum_floats([mine], self.world)[0]

    def gradient(self) -> torch.Tensor:
        """∇L over the selected parameters, flat (n,)."""
        g = self._zeros()
        for (x, y), w in zip(self.batches, self.weights):
            g = g + self.flatten(torch.autograd.grad(self._batch_loss(x, y, w), self.params, allow_unused=True))
        return sum_across(g, self.world)

    def _zeros(self, *lead: int) -> torch.Tensor:
        return torch.zeros(*lead, self.n, dtype=self.dtype, device=self.device)

    def _grads_with_graph(self, x: torch.Tensor, y: torch.Tensor, w: float) -> List[Optional[torch.Tensor]]:
        return list(torch.autograd.grad(self._batch_loss(x, y, w), self.params, create_graph=True, allow_unused=True))

    # -- second order ---------------------------------------------------------------------------------
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Hv for a flat v (n,); counts one product."""
        if v.shape != (self.n,):
            raise ValueError(f"v has shape {tuple(v.shape)}, expected ({self.n},) (the selected parameters).")
        v = v.to(self.dtype)
        self.products += 1
        return sum_across(self._local_matvec(v), self.world)

    def _local_matvec(self, v: torch.Tensor) -> torch.Tensor:
        """This rank's part of Hv (all of it in one process)."""
        if not self.batches:
            return torch.zeros_like(v)
        if self.method == "forward":
            return self._forward_over_reverse(v)
        graph = self._cached_graph() if self.cache_graph else None
        if graph is not None:
            return self._backward(graph, v, retain=True)
        hv = torch.zeros_like(v)
        for (x, y), w in zip(self.batches, self.weights):
            hv = hv + self._backward(self._grads_with_graph(x, y, w), v, retain=False)
        return hv

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """H applied to each row of vs (s, n) -> (s, n); counts s products. With the cached reverse
        graph the s backward passes run as one vectorised pass (``is_grads_batched``), several times
        faster than s single products on small and medium models; across processes the block of
        products is one all-reduce."""
        if vs.ndim != 2 or vs.shape[1] != self.n:
            raise ValueError(f"vs has shape {tuple(vs.shape)}, expected (s, {self.n}).")
        vs = vs.to(self.dtype)
        self.products += vs.shape[0]
        return sum_across(self._local_matmat(vs), self.world)

    def _local_matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """This rank's part of H applied to each row of vs."""
        batched = self.batches and self.method == "reverse" and self.cache_graph and self._batched_ok
        graph = self._cached_graph() if batched else None
        if graph is not None:
            s = vs.shape[0]
            cols = [c.reshape(s, *shape) for c, shape in zip(torch.split(vs, self.numels, dim=1), self.shapes)]
            try:
                hv = _second_backward(graph, cols, self.params, retain=True, batched=True)
            except RuntimeError:  # an op whose double backward vmap does not cover: one product at a time
                self._batched_ok = False
            else:
                if hv is None:
                    return torch.zeros_like(vs)
                return torch.cat(
                    [
                        torch.zeros(s, n, dtype=self.dtype, device=self.device) if h is None else h.reshape(s, -1)
                        for h, n in zip(hv, self.numels)
                    ],
                    dim=1,
                )
        return torch.stack([self._local_matvec(v) for v in vs])

    def _cached_graph(self) -> Optional[List[Optional[torch.Tensor]]]:
        """The summed first-order gradients with their graph, built on first use; None (and from then
        on ``cache_graph`` False) when the graph of all this process's images would not fit."""
        if self._graph is None and self.batches:
            free = free_memory(self.device)
            (x0, y0), w0 = self.batches[0], self.weights[0]
            with SavedBytes(self.params, self.device) as saved:
                first = self._grads_with_graph(x0, y0, w0)
            self.graph_bytes = saved.bytes * self.local_images / size_of(x0)
            if self._fit_graph and not graph_fits(self.graph_bytes, free):
                self.cache_graph = False  # rebuild per product: one batch's graph at a time
                return None
            rest = [self._grads_with_graph(x, y, w) for (x, y), w in zip(self.batches[1:], self.weights[1:])]
            self._graph = [_sum_opt(gs) for gs in zip(first, *rest)]
        return self._graph

    def _backward(self, grads: List[Optional[torch.Tensor]], v: torch.Tensor, retain: bool) -> torch.Tensor:
        hv = _second_backward(grads, self.unflatten(v), self.params, retain=retain, batched=False)
        return torch.zeros_like(v) if hv is None else self.flatten(hv)

    def _forward_over_reverse(self, v: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call, grad, jvp

        names, model = self.names, self.model

        def loss_of(ps: Tuple[torch.Tensor, ...]) -> torch.Tensor:
            out = 0.0
            for (x, y), w in zip(self.batches, self.weights):
                pred = functional_call(model, dict(zip(names, ps)), (x,), strict=False)
                out = out + scalar_loss(self.loss_fn(pred, y)) * w
            return out

        primals = tuple(p.detach() for p in self.params)
        # no_grad: the other (unselected) parameters must not record an autograd graph; torch.func
        # transforms ignore an outer no_grad for their own inputs.
        with torch.no_grad():
            _, hv = jvp(grad(loss_of), (primals,), (tuple(self.unflatten(v)),))
        return self.flatten(hv)

    def release(self) -> None:
        """Free the cached gradient graph (the operator rebuilds it if used again)."""
        self._graph = None


def _second_backward(
    grads: Sequence[Optional[torch.Tensor]],
    outputs: Sequence[torch.Tensor],
    params: Sequence[nn.Parameter],
    retain: bool,
    batched: bool,
) -> Optional[Tuple[Optional[torch.Tensor], ...]]:
    """∂(gᵀv)/∂θ through the first-order graph, ``outputs`` (v, or rows of vs with ``batched``) shaped
    like the parameters. A gradient that does not depend on the parameters (the loss is linear in
    them) has no graph: its Hessian rows are zero, and None says that every one is."""
    keep = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
    if not keep:
        return None
    return torch.autograd.grad(
        [grads[i] for i in keep],
        list(params),
        grad_outputs=[outputs[i] for i in keep],
        retain_graph=retain,
        allow_unused=True,
        is_grads_batched=batched,
    )


def _sum_opt(ts: Sequence[Optional[torch.Tensor]]) -> Optional[torch.Tensor]:
    present = [t for t in ts if t is not None]
    if not present:
        return None
    out = present[0]
    for t in present[1:]:
        out = out + t
    return out


__all__ = ["HessianOperator", "METHODS"]
