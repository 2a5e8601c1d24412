"""The probe context: everything a registered probe (``probe(ctx, **params) -> ProbeResult``,
DESIGN.md "Probes are small registered functions") needs to measure one model on one image set.

- the model in eval mode on its device, its :class:`~maskdistill.models.spec.ModelInfo`, a name;
- batches of images through the model's OWN timm eval transform (``resolve_data_config`` +
  ``create_transform`` with the model's size, crop, interpolation, mean and std), float and
  normalised, with labels: :meth:`ProbeContext.batches` streams ``images`` images;
  :meth:`ProbeContext.labelled_batches` returns fixed labelled batches (Hessian probes, Sec. 4);
- the autocast dtype (bf16 on CUDA, none on CPU), the seed, and a memo for shared passes:
  :meth:`ProbeContext.shared_pass` runs the one streaming forward pass behind the attention and
  representation probes (Secs. 3-4) and keeps its small results for the others.

Model specs take options after ``?`` that go to ``timm.create_model`` (and ``pretrained``), e.g.
``timm:vit_small_patch14_dinov2@w.safetensors?img_size=224&num_classes=0`` or
``timm:test_vit?pretrained=false``.
"""

from __future__ import annotations

import ast
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from maskdistill import __version__
from maskdistill.data.analysis_data import AnalysisData
from maskdistill.models.device import resolve_device
from maskdistill.models.spec import ModelInfo, load_model

log = logging.getLogger(__name__)
NEEDS_KNOWN = ("attention", "tokens", "labels", "classifier")
NeedCheck = Callable[["ProbeContext", Mapping[str, Any]], Optional[str]]
_NEED_CHECKS: Dict[str, NeedCheck] = {}


def register_need(name: str) -> Callable[[NeedCheck], NeedCheck]:
    """Let a probe family judge one of its own ``needs`` (e.g. "human_responses"): ``check(ctx, params)``
    (``params``: the probe's ``--param`` values) returns None when they meet it, else the reason, which
    ``analyze --probes all`` records when it skips the probe. Needs nobody judges are assumed met (the
    probe then says what is missing)."""

    def deco(fn: NeedCheck) -> NeedCheck:
        _NEED_CHECKS[name] = fn
        return fn

    return deco


def split_spec(spec: str) -> Tuple[str, Dict[str, Any]]:
    """``"timm:x@w?img_size=224&num_classes=0"`` -> ("timm:x@w", {"img_size": 224, "num_classes": 0})."""
    base, q, query = spec.partition("?")
    opts: Dict[str, Any] = {}
    for part in filter(None, query.split("&")) if q else ():
        key, eq, value = part.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"model spec {spec!r}: option {part!r} is not key=value (e.g. ?img_size=224).")
        low = value.lower()
        if low in ("true", "false"):
            opts[key] = low == "true"
        else:
            try:
                opts[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                opts[key] = value
    return base, opts


def _input_size(model: nn.Module, info: ModelInfo) -> Tuple[int, Optional[str]]:
    """The image side the model really takes: a ViT built with ``img_size=`` keeps the pretrained
    config's size in ``pretrained_cfg`` (e.g. DINOv2's 518) -- feeding that would fail or silently
    change the grid, so a fixed-size patch embedding wins, and the note says so."""
    pe = getattr(model, "patch_embed", None)
    size = getattr(pe, "img_size", None)
    dynamic = bool(getattr(model, "dynamic_img_size", False)) or not bool(getattr(pe, "strict_img_size", True))
    if size is None or dynamic:
        return int(info.img_size), None
    side = int(size[0] if isinstance(size, (tuple, list)) else size)
    if isinstance(size, (tuple, list)) and len(set(size)) != 1:
        raise ValueError(f"{info.spec}: non-square input {tuple(size)} is not supported by the analysis.")
    if side != info.img_size:
        return side, (
            f"pretrained_cfg says {info.img_size}px but the patch embedding takes {side}px; "
            f"images are resized (short side {side}/crop_pct) and centre-cropped to {side}px."
        )
    return side, None


@dataclass
class ProbeContext:
    name: str
    model: nn.Module
    info: ModelInfo
    data: AnalysisData
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    images: int = 256
    batch_size: int = 64
    seed: int = 0
    workers: int = 0
    progress: bool = False
    wanted: Optional[Set[str]] = None  # probes this analysis runs (the shared pass computes what they read)
    label_smoothing: float = 0.0  # the loss of the Hessian probes
    memo: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model = self.model.eval().to(self.device)
        self.img_size, self.size_note = _input_size(self.model, self.info)
        if self.size_note:
            log.warning("%s: %s", self.name, self.size_note)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_spec(
        cls, name: str, spec: str, data: AnalysisData, device: str | torch.device = "auto", **kwargs: Any
    ) -> "ProbeContext":
        base, opts = split_spec(spec)
        pretrained = bool(opts.pop("pretrained", True))
        model, info = load_model(base, pretrained=pretrained, **opts)
        return cls(name=name, model=model, info=info, data=data, device=resolve_device(device), **kwargs)

    @property
    def spec(self) -> str:
        return self.info.spec

    @property
    def mean(self) -> Tuple[float, ...]:
        return tuple(self.info.mean)

    @property
    def std(self) -> Tuple[float, ...]:
        return tuple(self.info.std)

    @property
    def autocast_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA; plain float32 on CPU (CPU bf16 is slower and less exact)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ data
    def transform(self):
        """timm's eval transform with the model's own settings (resize short side to size/crop_pct,
        centre crop, to tensor, normalise)."""
        from timm.data import create_transform, resolve_data_config

        cfg = resolve_data_config(
            {
                "input_size": (3, self.img_size, self.img_size),
                "crop_pct": self.info.crop_pct,
                "interpolation": self.info.interpolation,
                "mean": self.mean,
                "std": self.std,
                "crop_mode": "center",
            }
        )
        return create_transform(**cfg, is_training=False)

    def dataset(self):
        if "dataset" not in self.memo:
            self.memo["dataset"] = self.data.subset(self.images, self.seed, self.transform())
        return self.memo["dataset"]

    def batches(self, batch_size: Optional[int] = None, desc: str = "") -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Stream (images (B, 3, S, S) float normalised, labels (B,)) on the device; a progress bar
        in images/s when ``progress``."""
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        ds = self.dataset()
        loader = DataLoader(
            ds,
            batch_size=batch_size or self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        with tqdm(
            total=len(ds),
            unit="img",
            desc=desc or self.name,
            disable=not self.progress,
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            for x, y in loader:
                yield x.to(self.device, non_blocking=True), torch.as_tensor(y).to(self.device)
                bar.update(int(x.shape[0]))

    def labelled_batches(self, n_batches: int, batch_size: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """The same fixed labelled batches at every call (the first ``n_batches * batch_size`` of the
        analysed images); labels must be classes the classifier has."""
        reason = self.missing(("labels", "classifier"))
        if reason:
            raise ValueError(f"{self.name}: labelled batches are unavailable: {'; '.join(reason)}.")
        key = f"labelled:{n_batches}:{batch_size}"
        if key not in self.memo:
            out: List[Tuple[torch.Tensor, torch.Tensor]] = []
            for x, y in self.batches(batch_size, desc=f"{self.name}: labelled batches"):
                out.append((x, y))
                if len(out) == n_batches:
                    break
            self.memo[key] = out
        return self.memo[key]

    # ------------------------------------------------------------------ needs
    def missing(self, needs: Sequence[str], params: Optional[Mapping[str, Any]] = None) -> List[str]:
        """Reasons why needs cannot be met (empty when all can), given the probe's parameters; needs
        that no family judges (:func:`register_need`) are not judged here."""
        reasons: List[str] = []
        if {"attention", "tokens"} & set(needs):
            from maskdistill.models.capture import attention_modules, find_encoder

            try:
                enc = find_encoder(self.model)
                if "attention" in needs:
                    attention_modules(enc)
            except (TypeError, ValueError) as e:
                reasons.append(str(e))
        if "labels" in needs and not self.data.labelled:
            reasons.append(f"the data {self.data.spec} has no labels (use class sub-folders or builtin:...)")
        if "classifier" in needs:
            n = int(self.info.num_classes or 0)
            if n <= 0:
                reasons.append(f"{self.spec} has no classifier head (num_classes=0)")
            elif self.data.labelled and len(self.data.classes) > n:
                reasons.append(f"the data has {len(self.data.classes)} classes but {self.spec} only {n} outputs")
        for need in needs:
            if need in _NEED_CHECKS:
                why = _NEED_CHECKS[need](self, params or {})
                if why:
                    reasons.append(why)
        return reasons

    # ------------------------------------------------------------------ shared pass
    def shared_pass(self, group: str, maps: Any = None):
        """The memoised streaming pass (``probes/shared_pass.py``). The first call computes every
        group that the probes in ``wanted`` read (all groups when ``wanted`` is None), so one forward
        pass serves them all; a group asked for later runs one more pass for what is missing.
        ``maps``: the attention maps the first pass keeps (default ``MapRequest()``)."""
        from maskdistill.probes.core.shared_pass import GROUPS, PROBE_GROUPS, run_shared_pass

        stats = self.memo.get("shared")
        if stats is not None and group in stats.groups:
            return stats
        todo = {group}
        if stats is None:
            todo |= set(GROUPS) if self.wanted is None else {PROBE_GROUPS[p] for p in self.wanted if p in PROBE_GROUPS}
        new = run_shared_pass(self, todo, maps)
        if stats is None:
            self.memo["shared"] = new
        else:
            stats.merge(new)
        return self.memo["shared"]

    def attention_maps(self, request: Any):
        """Attention maps (Fig. 2) for a :class:`~maskdistill.probes.core.shared_pass.MapRequest`: kept by
        the shared pass (run now, keeping these maps, if it has not run yet), else -- when it kept other
        maps -- a short pass over the requested images only. Returns the SharedStats holding
        ``maps``, ``map_values`` and ``map_images``."""
        from maskdistill.probes.core.shared_pass import run_shared_pass

        stats = self.memo.get("shared")
        if stats is None or "attention" not in stats.groups:
            stats = self.shared_pass("attention", maps=request)
        if "attention" in stats.groups and stats.request == request:
            return stats
        key = f"maps:{request!r}"
        if key not in self.memo:
            self.memo[key] = run_shared_pass(self, {"attention"}, request, maps_only=True)
        return self.memo[key]

    # ------------------------------------------------------------------ metadata
    def meta(self, **extra: Any) -> Dict[str, Any]:
        """What every result records: model, spec, data, images, seed, device, dtype, version."""
        m = {
            "model": self.name,
            "spec": self.spec,
            "arch": self.info.arch,
            "data": self.data.describe(),
            "images_requested": self.images,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "device": str(self.device),
            "autocast": str(self.autocast_dtype).replace("torch.", ""),
            "img_size": self.img_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.info.crop_pct,
            "interpolation": self.info.interpolation,
            "version": __version__,
        }
        if self.size_note:
            m["img_size_note"] = self.size_note
        m.update(extra)
        return m


__all__ = ["ProbeContext", "split_spec", "register_need", "NEEDS_KNOWN"]
