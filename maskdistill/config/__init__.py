"""Typed configuration for every job: dataclass defaults (``schema``), YAML presets that hold only
deltas and dotted command-line overrides (``optim.lr=1e-3``), merged and type-checked by OmegaConf
(``loader``).

The defaults are the paper's pre-training recipe (Table 1, "BEiT v2/Base" column) with a CLIP
ViT-B/16 teacher; presets in ``maskdistill/configs/`` change only what differs.
"""

from maskdistill.config.loader import PRESET_DIR, diff, from_dict, load_config, to_dict, to_yaml
from maskdistill.config.schema import (
    ConfigError,
    DataConfig,
    DecoderConfig,
    JobConfig,
    LogConfig,
    MaskConfig,
    ObjectiveConfig,
    OptimConfig,
    PretrainConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    validate,
)

__all__ = [
    "PRESET_DIR",
    "ConfigError",
    "DataConfig",
    "DecoderConfig",
    "JobConfig",
    "LogConfig",
    "MaskConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "PretrainConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrainConfig",
    "diff",
    "from_dict",
    "load_config",
    "to_dict",
    "to_yaml",
    "validate",
]
