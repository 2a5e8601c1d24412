"""Hessian-vector products of the mean loss over a fixed list of batches (paper Sec. 4, Eq. (3):
Hv = ∂(gᵀv)/∂θ, Pearlmutter's trick).

:class:`HessianOperator` is the linear map v ↦ Hv on flat vectors over the selected parameters (a
parameter filter restricts H to the diagonal block of e.g. one transformer block). Two ways:

- ``"reverse"`` (double backprop): the gradient graph (``create_graph=True``) is built once and every
  product is one more backward pass through it (``retain_graph=True``). Iterative methods call the
  product tens of times on the same batches, so building the first-order graph once pays; with
  ``cache_graph=False`` it is rebuilt per product and only one batch's graph is alive at a time;
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

from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from maskdistill.parallel.collectives import sum_across, sum_floats
from maskdistill.parallel.group import SINGLE, Dist

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batches = Sequence[Tuple[torch.Tensor, torch.Tensor]]
ParamFilter = Union[None, str, Sequence[str], Callable[[str, nn.Parameter], bool]]
METHODS = ("reverse", "forward")
# The cached first-order graph holds every local image's activations twice over; above this many
# images on one rank a product rebuilds it batch by batch instead (memory of one batch's graph).
CACHE_IMAGES = 256


def _matches(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def select_params(model: nn.Module, params: ParamFilter = None) -> List[Tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs a probe differentiates: every trainable parameter (``None``), those
    under a dotted prefix (``"blocks.3"``) or any of several prefixes, or those a predicate
    ``fn(name, param) -> bool`` accepts. Frozen parameters (``requires_grad=False``) never count."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        chosen = named
    elif isinstance(params, str):
        chosen = [(n, p) for n, p in named if _matches(n, params)]
    elif callable(params):
        chosen = [(n, p) for n, p in named if params(n, p)]
    else:
        prefixes = list(params)
        chosen = [(n, p) for n, p in named if any(_matches(n, s) for s in prefixes)]
    if not chosen:
        sample = ", ".join(n for n, _ in named[:6]) or "none: every parameter is frozen"
        raise ValueError(
            f"the parameter filter {params!r} selects no trainable parameter; names look like "
            f"{sample}. Pass a dotted prefix such as 'blocks.0', a list of them, or a predicate."
        )
    return chosen


def check_batches(batches: Batches, allow_empty: bool = False) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    batches = list(batches)
    if not batches and not allow_empty:
        raise ValueError(
            "batches is empty: the Hessian needs at least one (inputs, targets) batch; pass e.g. [(images, labels)]."
        )
    for i, b in enumerate(batches):
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise ValueError(f"batch {i} is a {type(b).__name__}, expected an (inputs, targets) pair.")
        if _size(b[0]) == 0:
            raise ValueError(f"batch {i} has no samples; drop empty batches.")
    return [(b[0], b[1]) for b in batches]


def _size(x: object) -> int:
    return int(x.shape[0]) if torch.is_tensor(x) and x.ndim > 0 else 1


def scalar_loss(loss: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(loss) or loss.numel() != 1:
        shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
        raise ValueError(
            f"loss_fn returned {shape}, not a scalar: the Hessian is that of one number. Use a "
            f"mean-reduced criterion (e.g. nn.CrossEntropyLoss(reduction='mean'))."
        )
    return loss.reshape(())


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
        local = sum(_size(x) for x, _ in self.batches)
        self.cache_graph = local <= CACHE_IMAGES if cache_graph is None else cache_graph
        total = sum_floats([float(local)], self.world)[0]  # every rank's images weigh the same
        if total == 0:
            raise ValueError("no rank holds an image of the Hessian's batches; give the probe images.")
        self.weights = [_size(x) / total for x, _ in self.batches]
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
        if self.cache_graph:
            return self._backward(self._cached_graph(), v, retain=True)
        hv = torch.zeros_like(v)
        for (x, y), w in zip(self.batches, self.weights):
            hv = hv + self._backward(self._grads_with_graph(x, y, w), v, retain=False)
        return hv

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        """H applied to each row of vs (s, n) -> (s, n); counts s products. With the cached reverse
        graph the s backward passes run as one vectorised pass (``is_grads_batched``), several times
        faster than s single products on small and medium models."""
        if vs.ndim != 2 or vs.shape[1] != self.n:
            raise ValueError(f"vs has shape {tuple(vs.shape)}, expected (s, {self.n}).")
        if self.world.enabled:  # one all-reduce for the block of products
            self.products += vs.shape[0]
            local = torch.stack([self._local_matvec(v.to(self.dtype)) for v in vs])
            return sum_across(local, self.world)
        if self.method == "reverse" and self.cache_graph and self._batched_ok:
            s = vs.shape[0]
            cols = [
                c.reshape(s, *shape)
                for c, shape in zip(torch.split(vs.to(self.dtype), self.numels, dim=1), self.shapes)
            ]
            try:
                hv = _second_backward(self._cached_graph(), cols, self.params, retain=True, batched=True)
            except RuntimeError:  # an op whose double backward vmap does not cover: one product at a time
                self._batched_ok = False
            else:
                self.products += s
                if hv is None:
                    return torch.zeros_like(vs)
                return torch.cat(
                    [
                        torch.zeros(s, n, dtype=self.dtype, device=self.device) if h is None else h.reshape(s, -1)
                        for h, n in zip(hv, self.numels)
                    ],
                    dim=1,
                )
        return torch.stack([self.matvec(v) for v in vs])

    def _cached_graph(self) -> List[Optional[torch.Tensor]]:
        if self._graph is None:
            per_batch = [self._grads_with_graph(x, y, w) for (x, y), w in zip(self.batches, self.weights)]
            self._graph = [_sum_opt(gs) for gs in zip(*per_batch)]
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


__all__ = [
    "CACHE_IMAGES",
    "HessianOperator",
    "select_params",
    "check_batches",
    "scalar_loss",
    "LossFn",
    "Batches",
    "ParamFilter",
    "METHODS",
]
