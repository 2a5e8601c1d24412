"""The forms a model spec takes, written once: every command that takes "any model" (the teacher of
Eq. 1, the start of a fine-tune, the models of an analysis) and every error that lists the forms
reads them from here, so a new form cannot be accepted in one place and missing from another's
message. The parser itself is ``maskdistill.models.spec.parse_spec``."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

# timm's own names of models outside its registry: a Hugging Face hub repository or a local folder in
# the hub layout (config.json + model.safetensors), as written by ``maskdistill export``.
HUB_SCHEMES: Tuple[str, ...] = ("hf-hub:", "local-dir:")

# Specs that name a timm network (usable by every command that takes a model).
NETWORK_FORMS: Tuple[str, ...] = (
    "timm:<name>[@weights file]",
    "hf-hub:<org>/<name>",
    "local-dir:<folder>",
    "a maskdistill run or checkpoint directory",
)
# Specs only a teacher takes (no network to fine-tune or analyse).
TEACHER_ONLY_FORMS: Tuple[str, ...] = ("open_clip:<arch>/<tag>", "pixels")


def forms_text(forms: Tuple[str, ...] = NETWORK_FORMS + TEACHER_ONLY_FORMS) -> str:
    """``"a, b, c or d"``: the forms as a phrase for an error message."""
    return ", ".join(forms[:-1]) + " or " + forms[-1] if len(forms) > 1 else forms[0]


SPEC_FORMS = forms_text()
NETWORK_SPEC_FORMS = forms_text(NETWORK_FORMS)


def is_hub_name(name: str) -> bool:
    """``hf-hub:...`` or ``local-dir:...``: a name ``timm.create_model`` resolves itself."""
    return str(name).startswith(HUB_SCHEMES)


def canonical_spec(spec: str) -> str:
    """The spec with a local folder (a run directory, ``local-dir:<folder>``) as an absolute path, so
    that two spellings of one teacher compare equal and a recorded spec works from any directory."""
    scheme = "local-dir:" if spec.startswith("local-dir:") else ""
    path = Path(spec[len(scheme) :]).expanduser()
    return scheme + str(path.resolve()) if path.exists() else spec


__all__ = [
    "HUB_SCHEMES",
    "NETWORK_FORMS",
    "TEACHER_ONLY_FORMS",
    "SPEC_FORMS",
    "NETWORK_SPEC_FORMS",
    "canonical_spec",
    "forms_text",
    "is_hub_name",
]
