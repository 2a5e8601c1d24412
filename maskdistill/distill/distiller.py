"""MaskedDistiller: the paper's Eq. 1, L = M_out(R(N(T(I)), D(S(M_in(I))))), as one module that
returns its loss (the training loop does the backward pass).

Images arrive as uint8 (B, C, H, W) (or floats in [0, 1]); teacher and student each apply their own
input normalisation to the same crop. The mask (B, N) is True where a patch is masked: M_in
replaces those patch embeddings by the mask token inside the student, and M_out restricts the loss
to them ("masked", the default) or counts every token ("all", plain feature distillation as FD).

With code targets (BEiT v2, paper Sec. 5 / App. B) the teacher is a frozen VQ-KD tokenizer that
returns one code per patch (B, N) (``teacher.returns_codes``): the codes are neither resampled nor
whitened, D maps to K logits and R is the cross-entropy.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from maskdistill.config import ObjectiveConfig
from maskdistill.data.transforms import to_unit
from maskdistill.distill.parts import Whitening, objective
from maskdistill.models.student import MaskedStudent
from maskdistill.models.teacher import resample_tokens

log = logging.getLogger(__name__)


def select_tokens(x: torch.Tensor, sel: torch.Tensor, count: Optional[int]) -> torch.Tensor:
    """x (B, N, C), sel (B, N) bool -> (M, C). With a known per-sample count the selection is a
    gather with static shapes (no host sync, friendly to torch.compile); else boolean indexing."""
    if count is None:
        return x[sel]
    idx = torch.argsort(sel.to(torch.int8), dim=1, descending=True, stable=True)[:, :count]  # (B, k)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1])).flatten(0, 1)


class MaskedDistiller(nn.Module):
    def __init__(
        self,
        teacher: nn.Module,
        student: MaskedStudent,
        decoder: nn.Module,
        whitening: Whitening,
        objective_cfg: ObjectiveConfig,
        loss_on: str = "masked",
        student_mean: Sequence[float] = (0.485, 0.456, 0.406),
        student_std: Sequence[float] = (0.229, 0.224, 0.225),
        num_masked: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.teacher, self.student, self.decoder, self.whiten = teacher, student, decoder, whitening
        self.objective_cfg = objective_cfg
        if loss_on not in ("masked", "all"):
            raise ValueError(f"loss_on={loss_on!r}; use masked or all.")
        if loss_on == "masked" and num_masked == 0:
            raise ValueError(
                "the loss counts only masked tokens (mask.loss_on=masked) but no patch is masked "
                "(mask.kind=none or num_masked=0), so the loss would be NaN; set mask.loss_on=all "
                "for plain feature distillation (FD), or mask some patches."
            )
        self.loss_on = loss_on
        self.num_masked = num_masked
        self.register_buffer("mean", torch.tensor(student_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(student_std).view(1, -1, 1, 1), persistent=False)
        t_prefix = teacher.num_prefix if teacher.prefix_tokens else 0
        if t_prefix > student.num_prefix:
            raise ValueError(
                f"the teacher has {t_prefix} prefix tokens to distil but the student only "
                f"{student.num_prefix}; set teacher.prefix_tokens=false."
            )
        self.t_prefix = t_prefix
        self.t_grid = getattr(teacher, "grid", student.grid)
        self.code_targets = bool(getattr(teacher, "returns_codes", False))
        if self.code_targets and tuple(self.t_grid) != tuple(student.grid):
            raise ValueError(
                f"the tokenizer's patch grid {tuple(self.t_grid)} differs from the student's "
                f"{tuple(student.grid)}; codes cannot be resampled, so give both the same patch grid."
            )
        if tuple(self.t_grid) != tuple(student.grid):
            log.warning(
                "teacher grid %s differs from the student grid %s: teacher tokens are resampled "
                "bilinearly to the student's grid",
                tuple(self.t_grid),
                tuple(student.grid),
            )

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """N(T(I)): whitened teacher tokens on the student grid, float32 (B, p_t + N, C_t); or, with
        code targets, the tokenizer's codes (B, N) int64."""
        with torch.no_grad():
            t = self.teacher(x)
            if self.code_targets:
                return t
            t = resample_tokens(t, self.t_grid, self.student.grid, self.t_prefix)
            return self.whiten(t)

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = to_unit(images)
        mask = mask.flatten(1).bool()  # (B, N)
        target = self.targets(x)
        feats = self.student((x - self.mean) / self.std, mask)  # (B, p_s + N, C_s)
        sel = mask if self.loss_on == "masked" else torch.ones_like(mask)
        count = self.num_masked if self.loss_on == "masked" else mask.shape[1]
        s_patch = feats[:, self.student.num_prefix :]
        if isinstance(self.decoder, nn.Linear):  # decode only the selected tokens: cheaper
            pred = self.decoder(select_tokens(s_patch, sel, count))
        else:
            pred = select_tokens(self.decoder(s_patch), sel, count)
        if self.code_targets:  # (B, N) codes -> (M,)
            tgt = select_tokens(target.unsqueeze(-1), sel, count).squeeze(-1)
        else:
            tgt = select_tokens(target[:, self.t_prefix :], sel, count)
        if self.t_prefix:  # prefix (CLS) tokens are never masked and always count
            pred = torch.cat([pred, self.decoder(feats[:, : self.t_prefix]).flatten(0, 1)])
            tgt = torch.cat([tgt, target[:, : self.t_prefix].flatten(0, 1)])
        loss = objective(pred, tgt, self.objective_cfg)
        return {"loss": loss}
