"""``maskdistill convert``: an official masked-distillation release (BEiT v2, FD, MILAN, dBOT, EVA-02)
as a timm model in the hub layout of ``maskdistill export``, usable as a teacher, a fine-tuning
start or an analysed model. The keys are mapped by the format's rules (``hub/formats.py``) and
timm's own filter of the architecture; the result must load with ``strict=True``. Whatever could
not be mapped is listed -- never dropped silently: a checkpoint key the architecture does not have
stops the conversion (``allow_unmapped`` drops it and lists it in the card), and a key the
architecture needs but the checkpoint lacks always does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import timm

from maskdistill.errors import UsageError
from maskdistill.hub.card import CardFacts, model_card
from maskdistill.hub.formats import FORMATS, Format, infer_kwargs, split_dropped
from maskdistill.hub.layout import Preprocessing, check_out, write_hub_folder
from maskdistill.models.loading import check_timm_name, read_state_dict, timm_filter


class ConvertError(UsageError):
    """A checkpoint that does not map onto the architecture; the message lists the keys."""


@dataclass
class Conversion:
    """What a conversion did: the architecture and its arguments, the keys dropped on purpose (with
    why), the checkpoint keys it could not map and dropped (only with ``allow_unmapped``)."""

    fmt: str
    arch: str
    kwargs: Dict[str, Any]
    dropped: Dict[str, str] = field(default_factory=dict)
    unmapped: List[str] = field(default_factory=list)
    out: Optional[Path] = None

    def notes(self) -> List[str]:
        lines = [f"converted from the official {self.fmt} release ({FORMATS[self.fmt].source})"]
        by_why: Dict[str, List[str]] = {}
        for k, why in self.dropped.items():
            by_why.setdefault(why, []).append(k)
        for why, keys in by_why.items():
            lines.append(f"dropped {len(keys)} key(s), {why}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}")
        if self.unmapped:
            lines.append(f"could not map and dropped (--allow-unmapped): {', '.join(self.unmapped)}")
        return lines


def _fit(fmt: str, arch: str, model: Any, sd: Dict[str, Any], allow_unmapped: bool) -> List[str]:
    """Check ``sd`` against the model's keys and shapes; returns the unmapped keys (allowed ones)."""
    own = model.state_dict()
    unmapped = sorted(set(sd) - set(own))
    missing = sorted(set(own) - set(sd))
    shapes = [
        f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in sd if k in own and sd[k].shape != own[k].shape
    ]
    if missing or shapes or (unmapped and not allow_unmapped):
        lines = [
            f"the {fmt} checkpoint does not map onto {arch} (keys as named after the format's and timm's renaming):"
        ]
        for title, keys in (
            ("checkpoint keys with no place in the architecture", unmapped),
            ("architecture keys the checkpoint lacks", missing),
            ("shape mismatches (checkpoint vs architecture)", shapes),
        ):
            if keys:
                lines.append(f"  {title} ({len(keys)}): {', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''}")
        lines.append(
            "  Check --format (and --arch / --kwarg num_heads=... for a non-standard model); "
            "--allow-unmapped drops extra checkpoint keys, listing them in the model card."
        )
        raise ConvertError("\n".join(lines))
    return unmapped


def convert_state_dict(
    fmt_name: str,
    sd: Dict[str, Any],
    arch: Optional[str] = None,
    kwargs: Optional[Dict[str, Any]] = None,
    allow_unmapped: bool = False,
) -> tuple[Any, Conversion]:
    """(the timm model holding ``sd`` loaded with ``strict=True``, what was done)."""
    if fmt_name not in FORMATS:
        raise UsageError(f"--format {fmt_name!r} is not one of {', '.join(FORMATS)}.")
    fmt: Format = FORMATS[fmt_name]
    arch = arch or fmt.arch
    check_timm_name(arch)
    kept, dropped = split_dropped(fmt, sd)
    kw = {**infer_kwargs(fmt, kept), **(kwargs or {})}
    model = timm.create_model(arch, pretrained=False, **kw)
    mapped = timm_filter(model, kept)
    unmapped = _fit(fmt_name, arch, model, mapped, allow_unmapped)
    model.load_state_dict({k: v for k, v in mapped.items() if k not in unmapped}, strict=True)
    return model.eval(), Conversion(fmt_name, arch, kw, dropped, unmapped)


def convert_checkpoint(
    fmt_name: str,
    ckpt: str | Path,
    out: str | Path,
    arch: Optional[str] = None,
    kwargs: Optional[Dict[str, Any]] = None,
    allow_unmapped: bool = False,
    overwrite: bool = False,
) -> Conversion:
    """Convert the checkpoint file ``ckpt`` and write it to ``out`` in the export layout."""
    out = Path(out).expanduser()
    check_out(out, overwrite)
    model, conv = convert_state_dict(fmt_name, read_state_dict(ckpt), arch, kwargs, allow_unmapped)
    fmt = FORMATS[fmt_name]
    side = int(conv.kwargs.get("img_size") or model.patch_embed.img_size[0])
    pre = Preprocessing(img_size=side, mean=fmt.mean, std=fmt.std, crop_pct=0.9)
    facts = CardFacts(
        name=out.name,
        kind="converted",
        arch=conv.arch,
        config={"format": fmt_name, "checkpoint": Path(ckpt).name, "arch": conv.arch, "kwargs": conv.kwargs},
        notes=conv.notes(),
    )
    conv.out = write_hub_folder(model, out, pre, dict(conv.kwargs), model_card(facts), overwrite=overwrite)
    return conv


__all__ = ["ConvertError", "Conversion", "convert_checkpoint", "convert_state_dict"]
