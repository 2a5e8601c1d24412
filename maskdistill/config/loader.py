"""Loading a job's configuration: dataclass defaults <- a YAML preset that holds only the deltas
(a file, or a name in ``maskdistill/configs/<job>/``) <- dotted command-line overrides
(``optim.lr=1e-3``), merged and type-checked by OmegaConf, then validated. An unknown key is refused
with the closest known keys. Also the plain-dict and YAML forms of a config and the list of
differences between two of them (what a refused resume prints)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from maskdistill.config.schema import ConfigError, PretrainConfig, validate

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


def _preset_path(name_or_path: Union[str, Path], kind: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (PRESET_DIR / kind / f"{name_or_path}.yaml", PRESET_DIR / kind / str(name_or_path)):
        if cand.is_file():
            return cand
    known = sorted(q.stem for q in (PRESET_DIR / kind).glob("*.yaml"))
    raise ConfigError(
        f"config {str(name_or_path)!r} is neither a file nor a preset; presets for {kind}: {', '.join(known)}."
    )


def load_config(
    preset: Optional[Union[str, Path]] = None,
    overrides: Sequence[str] = (),
    schema: type = PretrainConfig,
    kind: str = "pretrain",
) -> Any:
    """Defaults <- YAML preset (a file or a preset name) <- ``key.sub=value`` overrides."""
    base = OmegaConf.structured(schema)
    try:
        layers: List[DictConfig] = [base]
        if preset is not None:
            layers.append(OmegaConf.load(_preset_path(preset, kind)))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key.sub=value.")
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        hint = ""
        flat = _flat_keys(OmegaConf.to_container(base))
        if key and str(key) not in flat and "Did you mean" not in str(getattr(e, "msg", e)):
            close = difflib.get_close_matches(str(key), flat, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
        first = str(getattr(e, "msg", e)).splitlines()[0]
        end = "" if first.endswith(("?", ".")) else "."
        raise ConfigError(f"invalid config value for {key or '?'}: {first}{end}{hint}") from None
    obj = OmegaConf.to_object(merged)
    return validate(obj)


def _flat_keys(d: Dict[str, Any], prefix: str = "") -> List[str]:
    out = []
    for k, v in d.items():
        out += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def to_dict(cfg: Any) -> Dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_dict(d: Dict[str, Any], schema: type = PretrainConfig) -> Any:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(d)))


def diff(a: Dict[str, Any], b: Dict[str, Any], ignore: Sequence[str] = ()) -> List[str]:
    """Human-readable differences between two config dicts (``key: old -> new``)."""
    fa, fb = dict(_flat_items(a)), dict(_flat_items(b))
    out = []
    for k in sorted(set(fa) | set(fb)):
        if any(k == i or k.startswith(i + ".") for i in ignore):
            continue
        if fa.get(k, "<unset>") != fb.get(k, "<unset>"):
            out.append(f"{k}: {fa.get(k, '<unset>')!r} -> {fb.get(k, '<unset>')!r}")
    return out


def _flat_items(d: Dict[str, Any], prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flat_items(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", (list(v) if isinstance(v, tuple) else v)


__all__ = ["PRESET_DIR", "load_config", "to_dict", "to_yaml", "from_dict", "diff"]
