"""Building timm models by name and loading weights from local files, with errors that say what is
wrong and how to fix it (unknown names get close suggestions; weights that do not fit list the
missing and unexpected keys). Files are read without executing pickled code: safetensors, or
``torch.load(weights_only=True)`` for ``.pth``/``.pt``/``.bin``.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import timm
import torch
from torch import nn

from maskdistill.config.spec_forms import is_hub_name

_OFFLINE_HUB = (
    " Without network access, download the repository (hf download <org>/<name> --local-dir DIR) and pass "
    "local-dir:DIR."
)


class WeightsError(ValueError):
    """Weights that cannot be read or do not fit the architecture."""


def check_timm_name(name: str) -> None:
    """Raise with close suggestions when ``name`` is not a timm architecture (tags allowed); a
    ``local-dir:`` name must be a folder with a ``config.json`` (``hf-hub:`` names are checked by the hub)."""
    if is_hub_name(name):
        folder = Path(name.partition(":")[2]).expanduser()
        if name.startswith("local-dir:") and not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{name}: {str(folder)!r} holds no config.json; give a folder written by `maskdistill export` "
                f"or `maskdistill convert` (timm's hub layout)."
            )
        return
    arch = name.split(".")[0]
    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.5)
    hint = f" Close names: {', '.join(close)}." if close else " See timm.list_models('*vit*')."
    raise ValueError(f"timm has no model called {name!r}.{hint}")


def read_state_dict(path: str | Path) -> Dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a torch file (no pickled code is executed)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {str(path)!r} does not exist; give the path to a .safetensors or .pth file."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise WeightsError(f"cannot read {path} as safetensors: {e}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(
            f"cannot read {path} as a weights-only torch file ({e}). Convert it to "
            f"safetensors, or re-save only the state dict."
        ) from None
    # Common wrappers: {"model": sd}, {"state_dict": sd}, {"module": sd}.
    for key in ("model", "state_dict", "module", "model_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors.")
    return obj


def timm_filter(model: nn.Module, sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``sd`` through the ``checkpoint_filter_fn`` of ``model``'s timm module (unchanged without one)."""
    # timm model modules convert original checkpoints (other key layouts, other resolutions) with
    # a module-level checkpoint_filter_fn; reuse it instead of writing converters ourselves.
    fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if fn is None:
        return sd
    try:
        return fn(sd, model)
    except Exception:
        return sd


def load_weights(
    model: nn.Module, sd: Dict[str, torch.Tensor], source: str, ignore_prefixes: tuple[str, ...] = ()
) -> None:
    """Load ``sd`` strictly (keys and shapes), except keys under ``ignore_prefixes`` (e.g. a
    classifier head the caller does not use). Raises WeightsError listing what does not fit."""
    sd = timm_filter(model, dict(sd))
    own = model.state_dict()
    skip = lambda k: any(k == p or k.startswith(p + ".") for p in ignore_prefixes)  # noqa: E731
    missing = [k for k in own if k not in sd and not skip(k)]
    unexpected = [k for k in sd if k not in own and not skip(k)]
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sd
        if k in own and not skip(k) and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        lines = [f"weights in {source} do not fit {type(model).__name__}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                more = f" ... (+{len(items) - 8} more)" if len(items) > 8 else ""
                lines.append(f"  {title} ({len(items)}): {', '.join(items[:8])}{more}")
        lines.append("  Check that the file was saved from the same architecture (and timm name).")
        raise WeightsError("\n".join(lines))
    model.load_state_dict({k: v for k, v in sd.items() if k in own and not skip(k)}, strict=False)


def create_timm(name: str, weights: Optional[str] = None, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with a checked name; weights from a local file when given, else from
    timm's hub when ``pretrained`` (a clear error when the hub cannot be reached)."""
    check_timm_name(name)
    if weights is not None:
        model = timm.create_model(name, pretrained=False, **kwargs)
        head = (model.pretrained_cfg or {}).get("classifier", "head")
        load_weights(
            model, read_state_dict(weights), weights, ignore_prefixes=(head,) if kwargs.get("num_classes") == 0 else ()
        )
        return model
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as e:
        if is_hub_name(name):
            hint = "" if name.startswith("local-dir:") else _OFFLINE_HUB
            raise RuntimeError(f"could not load {name} ({type(e).__name__}: {e}).{hint}") from None
        raise RuntimeError(
            f"could not download pretrained weights for timm:{name} ({type(e).__name__}: {e}). "
            f"Without network access, download the weights elsewhere and pass a local file as "
            f"timm:{name}@/path/to/weights.safetensors."
        ) from None
