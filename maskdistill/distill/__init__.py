"""N, D, R of the paper's Eq. 1, the MaskedDistiller that composes T N S D M R, and BEiT v2's VQ-KD
tokenizer for masked distillation with code targets (Sec. 5 / App. B)."""

from maskdistill.distill.code_teacher import CodeTeacher, load_code_teacher
from maskdistill.distill.codebook import EMACodebook, codebook_stats, straight_through
from maskdistill.distill.distiller import MaskedDistiller, select_tokens, to_unit
from maskdistill.distill.parts import TransformerDecoder, Whitening, build_decoder, objective
from maskdistill.distill.tokenizer import VQKD, VQKDConfig
from maskdistill.distill.tokenizer_build import build_tokenizer, build_vqkd, load_tokenizer

__all__ = [
    "EMACodebook",
    "codebook_stats",
    "straight_through",
    "MaskedDistiller",
    "select_tokens",
    "to_unit",
    "TransformerDecoder",
    "Whitening",
    "build_decoder",
    "objective",
    "VQKD",
    "CodeTeacher",
    "VQKDConfig",
    "build_tokenizer",
    "build_vqkd",
    "load_code_teacher",
    "load_tokenizer",
]
