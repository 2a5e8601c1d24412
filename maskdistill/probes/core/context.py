"""The probe context: everything a registered probe (``probe(ctx, **params) -> ProbeResult``) needs
to measure one model on one image set (paper Secs. 3-5).

- the model in eval mode on its device, its :class:`~maskdistill.models.spec.ModelInfo`, a name;
- batches of images through the model's OWN timm eval transform (``resolve_data_config`` +
  ``create_transform`` with the model's size, crop, interpolation, mean and std), float and
  normalised, with labels: :meth:`ProbeContext.batches` streams ``images`` images;
  :meth:`ProbeContext.labelled_batches` returns fixed labelled batches (Hessian probes, Sec. 4);
- labels mapped onto the head by name (:mod:`maskdistill.probes.core.labels`; ``labels="folder-order"``
  states that class folder k is output k): for a model with a head, labels are head indices (-1
  where the data's classes cannot be mapped, which the ``labels`` need refuses with the fix);
- the bootstrap settings behind every interval (:mod:`maskdistill.probes.core.intervals`; None: no
  intervals), seeded by the analysis seed so that the models of a pair share their resamples;
- the process group (``world``; one process unless run under torchrun): each rank streams its
  contiguous share of the images (:meth:`ProbeContext.batches`) and holds its share of the
  curvature probes' images (:meth:`ProbeContext.labelled_batches`, ``hessian_images`` of them);
- the autocast dtype (bf16 on CUDA, none on CPU), the seed, and a memo for shared passes:
  :meth:`ProbeContext.shared_pass` runs the one streaming forward pass behind the attention and
  representation probes (Secs. 3-4) and keeps its small results for the others.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from maskdistill import __version__
from maskdistill.data.analysis_data import AnalysisData
from maskdistill.models.device import resolve_device
from maskdistill.models.label_names import head_names
from maskdistill.models.spec import ModelInfo, load_model
from maskdistill.parallel.group import SINGLE, Dist
from maskdistill.parallel.shards import RankBatches, batch_pieces, shard_range
from maskdistill.probes.core.intervals import Bootstrap
from maskdistill.probes.core.labels import LabelMap, LabelMapError, check_mode, map_labels
from maskdistill.probes.core.model_input import input_size, split_spec
from maskdistill.probes.core.needs import missing_needs
from maskdistill.probes.core.registry import shared_groups
from maskdistill.probes.core.shared_pass import SharedStats, group_names, run_shared_pass

log = logging.getLogger(__name__)


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
    bootstrap: Optional[Bootstrap] = field(default_factory=Bootstrap)  # intervals over images (None: off)
    labels: str = "by-name"  # how data labels map onto the head: by-name | folder-order (stated by the user)
    world: Dist = SINGLE  # the processes sharing this analysis (torchrun); each takes its share of the images
    hessian_images: Optional[int] = None  # images of the curvature probes (None: their n_batches x batch_size)
    memo: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_mode(self.labels)
        self.model = self.model.eval().to(self.device)
        self.img_size, self.size_note = input_size(self.model, self.info)
        if self.size_note:
            log.warning("%s: %s", self.name, self.size_note)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_spec(
        cls, name: str, spec: str, data: AnalysisData, device: str | torch.device = "auto", **kwargs: Any
    ) -> "ProbeContext":
        base, opts = split_spec(spec)
        pretrained = bool(opts.pop("pretrained", True))
        # Weights a spec does not load (pretrained=false, new heads) are drawn from the analysis
        # seed: the same model on every rank of a torchrun job and in every run.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(kwargs.get("seed", 0)))
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
            self.memo["dataset"] = self.data.subset(self.images, self.seed, self.transform(), self.world)
        return self.memo["dataset"]

    @property
    def shard_start(self) -> int:
        """The dataset position of this rank's first image in :meth:`batches`."""
        return shard_range(len(self.dataset()), self.world).start

    def batches(self, batch_size: Optional[int] = None, desc: str = "") -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Stream this rank's share of the images (all of them in one process) as (images (B, 3,
        S, S) float normalised, labels (B,)) on the device; a progress bar in images/s when
        ``progress`` (on the main rank)."""
        from torch.utils.data import Subset

        ds = self.dataset()
        mine = shard_range(len(ds), self.world)
        yield from self._load(Subset(ds, list(mine)), dict(batch_size=batch_size or self.batch_size), desc)

    def _load(self, ds: Any, batching: Dict[str, Any], desc: str) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        loader = DataLoader(
            ds,
            **batching,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        sampler = batching.get("batch_sampler")
        with tqdm(
            total=sum(len(b) for b in sampler) if sampler is not None else len(ds),
            unit="img",
            desc=desc or self.name,
            disable=not (self.progress and self.world.main),
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            for x, y in loader:
                yield x.to(self.device, non_blocking=True), self._head_labels(torch.as_tensor(y).to(self.device))
                bar.update(int(x.shape[0]))

    def check_shares(self) -> None:
        """Under torchrun every process needs at least one image of the pass to reduce."""
        if self.world.enabled and len(self.dataset()) < self.world.world:
            n, w = len(self.dataset()), self.world.world
            raise ValueError(f"{n} image(s) for {w} processes: analyse more (--images) or start fewer processes.")

    # ------------------------------------------------------------------ labels
    def _labels_apply(self) -> bool:
        return int(self.info.num_classes or 0) > 0 and self.data.labelled

    def label_map(self) -> LabelMap:
        """The data's classes mapped onto the head (memoised); raises :class:`LabelMapError` with the fix."""
        if "label_map" not in self.memo:
            n = int(self.info.num_classes or 0)
            try:
                head = head_names(n, self.info.classes)
                self.memo["label_map"] = map_labels(self.data, head, n, self.labels, self.spec)
            except LabelMapError as e:
                self.memo["label_map"] = e
        found = self.memo["label_map"]
        if isinstance(found, LabelMapError):
            raise found
        return found

    def label_refusal(self) -> Optional[str]:
        """Why the data's labels cannot be mapped onto the head (None when they can, or no head/labels)."""
        if not self._labels_apply():
            return None
        try:
            self.label_map()
        except LabelMapError as e:
            return str(e)
        return None

    def _head_labels(self, y: torch.Tensor) -> torch.Tensor:
        if not self._labels_apply():
            return y
        if self.label_refusal():
            return torch.full_like(y, -1)  # never a data index posing as a head index
        return self.label_map().apply(y)

    def labelled_batches(self, n_batches: int, batch_size: int, images: Optional[int] = None) -> RankBatches:
        """The same fixed labelled batches at every call: the first ``images`` images of the seeded
        order, beyond ``--images`` when asked (default: ``n_batches * batch_size`` of the analysed
        images), cut into batches of ``batch_size``; labels must be classes the classifier has. Under torchrun each
        rank holds its contiguous share, cut where the batches are, so a batch split between two
        ranks keeps its index (:class:`RankBatches`)."""
        from torch.utils.data import Subset

        reason = self.missing(("labels", "classifier"))
        if reason:
            raise ValueError(f"{self.name}: labelled batches are unavailable: {'; '.join(reason)}.")
        want = int(images or n_batches * batch_size)
        key = f"labelled:{want}:{batch_size}"
        if key not in self.memo:
            wider = images is not None and want > self.images  # --hessian-images beyond --images
            ds = self.data.subset(want, self.seed, self.transform(), self.world) if wider else self.dataset()
            n = min(want, len(ds))
            pieces, ids, count = batch_pieces(n, batch_size, self.world)
            out = self._load(Subset(ds, list(range(n))), dict(batch_sampler=pieces), f"{self.name}: labelled batches")
            self.memo[key] = RankBatches(list(out), self.world, ids, count)
        return self.memo[key]

    # ------------------------------------------------------------------ needs
    def missing(self, needs: Sequence[str], params: Optional[Mapping[str, Any]] = None) -> List[str]:
        """Reasons why needs cannot be met (empty when all can), given the probe's parameters."""
        return missing_needs(self, needs, params)

    # ------------------------------------------------------------------ shared pass
    def shared_pass(self, group: str, request: Any = None) -> SharedStats:
        """The memoised streaming pass. The first call computes every statistics group that the
        probes in ``wanted`` read (all groups when ``wanted`` is None), so one forward pass serves
        them all; a group asked for later runs one more pass for what is missing. ``request``: the
        option of ``group``'s accumulator in the pass that computes it (e.g. which attention maps to
        keep; None: its default)."""
        stats = self.memo.get("shared")
        if stats is not None and group in stats.groups:
            return stats
        todo = {group}
        if stats is None:
            todo |= set(group_names()) if self.wanted is None else shared_groups(self.wanted)
        new = run_shared_pass(self, todo, {group: request})
        if stats is None:
            self.memo["shared"] = new
        else:
            stats.merge(new)
        return self.memo["shared"]

    def images_pass(self, group: str, request: Any) -> SharedStats:
        """A short pass of one group over only the images its accumulator keeps for ``request``
        (e.g. attention maps other than those the shared pass kept), memoised by request."""
        key = f"images:{group}:{request!r}"
        if key not in self.memo:
            self.memo[key] = run_shared_pass(self, {group}, {group: request}, images_only=True)
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
            "images_unreadable": list(getattr(self.memo.get("dataset"), "unreadable", [])),  # skipped files
        }
        if self.size_note:
            m["img_size_note"] = self.size_note
        if self._labels_apply() and not self.label_refusal():
            m.update(self.label_map().meta())
        m.update(extra)
        return m


__all__ = ["ProbeContext"]
