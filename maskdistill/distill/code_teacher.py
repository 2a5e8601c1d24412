"""The frozen teacher T of masked distillation with code targets (paper Sec. 5 and App. B, Fig. 9):
a trained VQ-KD tokenizer maps each image to one code per patch, the decoder D predicts K logits and
R is the cross-entropy at the masked positions (BEiT v2's pre-training). Loading checks that the
tokenizer fits the run -- same teacher, codebook size, image size and patch grid -- before any
weights are read.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from maskdistill.config.spec_forms import canonical_spec
from maskdistill.distill.tokenizer import VQKD
from maskdistill.distill.tokenizer_build import load_tokenizer, tokenizer_info


def same_teacher(a: str, b: str) -> bool:
    """Two teacher specs name the same teacher (paths compared after resolving)."""
    return a == b or canonical_spec(a) == canonical_spec(b)


class CodeTeacher(nn.Module):
    """T for MD with code targets: the frozen tokenizer maps images in [0, 1] to codes (B, N)."""

    returns_codes = True
    num_prefix = 0
    prefix_tokens = False

    def __init__(self, tokenizer: VQKD, name: str = "tokenizer") -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.name = name
        self.dim = tokenizer.num_codes  # the decoder predicts K logits
        self.grid = tokenizer.grid
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "CodeTeacher":
        return super().train(False)  # frozen: the codebook never updates during MD

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.codes(images)


def load_code_teacher(path: str, teacher_spec: str, num_codes: int, img_size: int, grid: Sequence[int]) -> CodeTeacher:
    """Load a tokenizer for MD with code targets and check that it fits the run: same teacher,
    the configured codebook size (0 = any), the run's image size and the student's patch grid."""
    if not path:
        raise ValueError(
            "decoder.kind=tokenizer needs decoder.tokenizer=<run directory of `maskdistill tokenizer train`>."
        )
    info = tokenizer_info(path)[1]["tokenizer"]  # check what the meta data tells before loading weights
    if not same_teacher(str(info["teacher"]), teacher_spec):
        raise ValueError(
            f"the tokenizer {path} was built for teacher {info['teacher']!r}, but this run's "
            f"teacher is {teacher_spec!r}; set teacher.spec={info['teacher']} or train a tokenizer "
            f"for {teacher_spec}."
        )
    if num_codes and num_codes != int(info["num_codes"]):
        raise ValueError(
            f"the tokenizer {path} has a codebook of {info['num_codes']} codes, but this run asks for "
            f"decoder.codebook_size={num_codes}; set decoder.codebook_size={info['num_codes']} (or 0) "
            f"or train a tokenizer with tokenizer.num_codes={num_codes}."
        )
    if int(info["img_size"]) != img_size:
        raise ValueError(
            f"the tokenizer {path} was trained on {info['img_size']} px images, this run uses "
            f"data.img_size={img_size}; set data.img_size={info['img_size']}."
        )
    if tuple(info["grid"]) != tuple(grid):
        raise ValueError(
            f"the tokenizer's patch grid {tuple(info['grid'])} differs from the student's {tuple(grid)}, "
            f"and codes cannot be resampled; give the student the tokenizer's patch size "
            f"({img_size // int(info['grid'][0])})."
        )
    tok, info = load_tokenizer(path)
    return CodeTeacher(tok, f"VQ-KD codes ({tok.num_codes}) of {info['teacher']}")


__all__ = ["CodeTeacher", "load_code_teacher", "same_teacher"]
