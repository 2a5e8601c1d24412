"""The analysis at the end of ``maskdistill demo``: the paper's measurements of the demo's models,
into ``<out>/analysis/``, with two teacher/student pairs --

- the pre-trained supervised teacher vs its MD student (``teacher=student``): attention distance,
  entropy, NMI and maps, Fourier amplitudes, token and image singular values (Secs. 3-4);
- both fine-tuned on shape (``ft_teacher=ft_student``): Hessian eigenvalues and trace, the loss
  landscape and the shape bias on the built-in cue-conflict images (Secs. 4-5).

Every number carries its bootstrap interval over the analysed images, so the claims table says
*holds*, *contradicted* or *inconclusive*. The report itself is drawn by the caller (``report/``
sits above ``train/``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, List, Tuple

from maskdistill.probes.core.runner import run_analyze

log = logging.getLogger(__name__)

REPRESENTATION = tuple(
    "attention_distance attention_entropy attention_nmi attention_map feature_fourier "
    "token_singular_values image_singular_values".split()
)
FINETUNED = ("hessian_top_eigs", "hessian_trace", "loss_landscape_2d", "shape_bias")
# 256 images: twice the demo models' width, so that the image-level spectrum keeps all 128 values.
IMAGES = 256
DATA = "builtin:val"  # shape labels: the labels the fine-tuned heads were trained on


def stages(out: Path) -> List[Tuple[Dict[str, str], Tuple[str, str], Tuple[str, ...]]]:
    """(models, pair, probes) of the two analyses."""
    return [
        ({"teacher": str(out / "teacher"), "student": str(out / "student")}, ("teacher", "student"), REPRESENTATION),
        (
            {"ft_teacher": str(out / "finetune_teacher"), "ft_student": str(out / "finetune_student")},
            ("ft_teacher", "ft_student"),
            FINETUNED,
        ),
    ]


def run_demo_analysis(out: Path, overwrite: bool = False, images: int = IMAGES) -> Path:
    """Analyse the demo's four models into ``out/analysis`` (the probes finished before on the same
    weights are kept, unless ``overwrite``); returns the folder."""
    folder = out / "analysis"
    for models, pair, probes in stages(out):
        t = time.perf_counter()
        run_analyze(
            models, DATA, list(probes), folder, images=images, device="auto", pairs=[pair], progress=False,
            resume=not overwrite,
        )  # fmt: skip
        log.info("demo: analysed %s in %.0f s", " and ".join(models), time.perf_counter() - t)
    return folder


__all__ = ["run_demo_analysis", "stages", "REPRESENTATION", "FINETUNED", "IMAGES"]
