"""Activation capture for the probes of the paper's Secs. 3-4 (Figs. 2-6, 10): the post-softmax
attention of every block and the residual stream. The residual stream is taken at depth + 1 points:
index 0 is the input of the first block (patch embedding + position embedding, prefix tokens
included) and index l the output of block l, all before the final norm.

One context manager, :func:`capture`, switches timm's fused attention off, hooks the post-softmax
attention and undoes everything in ``finally``. For every supported timm attention module it sets
``fused_attn = False`` and hooks the module's ``attn_drop``: in timm's unfused path the post-softmax
attention is exactly the input of ``attn_drop`` (called once per forward), so what is recorded is
what the block then multiplies with v -- nothing is recomputed, and the model's outputs are those of
its own eager path. A forward hook on the attention module checks that the softmax was seen; an
attention forward that bypasses it (e.g. a patched kernel) raises instead of leaving a silently
empty result (timm's ``AttentionExtract`` returns nothing on fused models, so it is not used).

maskdistill's FlexAttention path (``models/flex.py``) is switched back to timm's path for the
duration and restored afterwards; any other instance-level ``forward`` override raises.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from timm.layers.attention import Attention as TimmAttention
from timm.layers.attention import AttentionRope
from timm.models.beit import Attention as BeitAttention
from timm.models.eva import EvaAttention
from torch import nn

# Classes whose unfused path is `attn = softmax(...); attn = self.attn_drop(attn); x = attn @ v`
# (checked against timm 1.0.31). timm's ViT, DeiT, DINOv2 (+ registers) and CLIP towers use
# TimmAttention; BEiT (relative position bias) BeitAttention; EVA EvaAttention / AttentionRope.
SUPPORTED = (TimmAttention, AttentionRope, BeitAttention, EvaAttention)

TensorHook = Callable[[int, torch.Tensor], None]


@dataclass
class Capture:
    """What one forward pass left behind. Each forward through the encoder (detected when its
    first block starts) replaces the previous record, so a streaming analysis keeps one batch at a
    time; ``clear()`` frees it early."""

    num_prefix: int  # prefix tokens (CLS + registers), counted from the model
    patch_size: int  # pixels per patch side
    depth: int  # number of blocks
    static_grid: Tuple[int, int]  # the patch embedding's configured grid (rows, cols)
    attention: List[torch.Tensor] = field(default_factory=list)  # per block (B, H, T, T), post-softmax
    tokens: List[torch.Tensor] = field(default_factory=list)  # depth + 1 entries (B, T, C), before final norm

    @property
    def grid(self) -> Tuple[int, int]:
        """(rows, cols) of the last forward (differs from ``static_grid`` for dynamic image sizes)."""
        seq = self.tokens[0].shape[1] if self.tokens else self.attention[0].shape[-1] if self.attention else None
        return self.static_grid if seq is None else self.grid_for(seq)

    def grid_for(self, seq: int) -> Tuple[int, int]:
        """(rows, cols) of a forward with ``seq`` tokens: the configured grid when the patch count fits
        it, else the square one (a dynamic image size)."""
        n = seq - self.num_prefix
        if n == self.static_grid[0] * self.static_grid[1]:
            return self.static_grid
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patch tokens fit neither the {self.static_grid} grid nor a square one.")
        return (side, side)

    def clear(self) -> None:
        self.attention.clear()
        self.tokens.clear()


def find_encoder(model: nn.Module) -> nn.Module:
    """The ViT inside ``model``: the outermost module with ``blocks`` and ``patch_embed`` (timm ViT,
    BEiT, EVA; a MaskedStudent's ``.model``; a Teacher's ``.backbone``)."""
    found: List[Tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        if isinstance(getattr(m, "blocks", None), (nn.ModuleList, nn.Sequential)) and hasattr(m, "patch_embed"):
            if not any(name.startswith(f"{n}.") or n == "" for n, _ in found):
                found.append((name, m))
    if not found:
        raise TypeError(
            f"capture found no ViT encoder (a module with .patch_embed and .blocks) in "
            f"{type(model).__name__}; pass a timm ViT/BEiT/EVA or a maskdistill student."
        )
    if len(found) > 1:
        raise ValueError(
            f"{type(model).__name__} holds several encoders ({', '.join(n for n, _ in found)}); pass the one to probe."
        )
    enc = found[0][1]
    if len(enc.blocks) == 0:
        raise ValueError(f"{type(enc).__name__} has no blocks to capture.")
    return enc


def _looks_like_attention(m: nn.Module) -> bool:
    return hasattr(m, "qkv") or hasattr(m, "fused_attn") or type(m).__name__.lower().endswith("attention")


def attention_modules(encoder: nn.Module) -> List[nn.Module]:
    """One supported attention module per block, in block order; anything else that looks like
    attention raises naming its class (its attention would be missed or wrong)."""
    found = []
    for i, blk in enumerate(encoder.blocks):
        mods = [m for m in blk.modules() if isinstance(m, SUPPORTED)]
        inside = {id(sub) for s in mods for sub in s.modules()}  # a supported module's own parts
        for m in blk.modules():
            if id(m) not in inside and _looks_like_attention(m):
                raise TypeError(
                    f"block {i} of {type(encoder).__name__} has attention of class "
                    f"{type(m).__module__}.{type(m).__name__}, which capture does not support "
                    f"(supported: {', '.join(c.__name__ for c in SUPPORTED)})."
                )
        if len(mods) != 1:
            raise TypeError(
                f"block {i} ({type(blk).__name__}) of {type(encoder).__name__} has {len(mods)} "
                f"supported attention modules; capture needs exactly one per block."
            )
        found.append(mods[0])
    return found


def _known_override(m: nn.Module) -> bool:
    """True for maskdistill's FlexAttention forward, which matches timm's path numerically."""
    from maskdistill.models.flex import _flex_forward

    return getattr(m.__dict__["forward"], "__func__", None) is _flex_forward


def _refuse_foreign_forwards(enc: nn.Module, attn_mods: List[nn.Module]) -> None:
    """An instance-level ``forward`` other than maskdistill's FlexAttention one may skip timm's
    softmax; refuse it before anything is changed."""
    for m in attn_mods:
        if "forward" in m.__dict__ and not _known_override(m):
            raise TypeError(
                f"{type(m).__name__} in {type(enc).__name__} has its forward replaced by "
                f"{m.__dict__['forward']!r}; capture cannot see its attention. Restore timm's "
                f"forward first (e.g. maskdistill.models.flex.use_timm_attention)."
            )


def _empty_capture(enc: nn.Module) -> Capture:
    return Capture(
        num_prefix=int(getattr(enc, "num_prefix_tokens", int(getattr(enc, "cls_token", None) is not None))),
        patch_size=int(enc.patch_embed.patch_size[0]),
        depth=len(enc.blocks),
        static_grid=tuple(int(g) for g in enc.patch_embed.grid_size),  # type: ignore[arg-type]
    )


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


@dataclass
class _Changes:
    """Every hook and instance attribute capture put on the model, so that all of it is undone."""

    handles: List[Any] = field(default_factory=list)
    saved: List[Tuple[nn.Module, str, Any]] = field(default_factory=list)  # (module, attribute, own value)

    def hook(self, handle: Any) -> None:
        self.handles.append(handle)

    def set(self, m: nn.Module, attr: str, value: Any) -> None:
        self.saved.append((m, attr, m.__dict__.get(attr, _MISSING)))
        setattr(m, attr, value)

    def drop(self, m: nn.Module, attr: str) -> None:
        """Remove an instance attribute (e.g. a forward override) so the class's own one shows."""
        self.saved.append((m, attr, m.__dict__[attr]))
        del m.__dict__[attr]

    def undo(self) -> None:
        for h in self.handles:
            h.remove()
        for m, attr, value in reversed(self.saved):
            if value is _MISSING:
                m.__dict__.pop(attr, None)
            else:
                setattr(m, attr, value)


@dataclass
class _Recorder:
    """Detaches, casts and keeps (or streams to a callback) what the hooks see."""

    cap: Capture
    dtype: Optional[torch.dtype]
    on_attention: Optional[TensorHook]
    on_tokens: Optional[TensorHook]
    seen: Dict[int, bool] = field(default_factory=dict)  # block -> its softmax ran in this forward

    def keep(self, kind: str, i: int, x: torch.Tensor) -> None:
        x = x.detach() if self.dtype is None else x.detach().to(self.dtype)
        cb = self.on_attention if kind == "attention" else self.on_tokens
        if cb is not None:
            cb(i, x)
        else:
            getattr(self.cap, kind).append(x)


def _hook_tokens(enc: nn.Module, rec: _Recorder, changes: _Changes, tokens: bool) -> None:
    """A pre-hook on the first block starts a new record per forward (and records the residual
    stream's entry point); with ``tokens``, a forward hook on every block records its output."""

    def start(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        rec.cap.clear()  # a new forward pass begins: keep one batch at a time
        if tokens:
            rec.keep("tokens", 0, args[0] if args else kwargs["x"])

    def block_out(i: int) -> Callable:
        def hook(_m: nn.Module, _args: tuple, out: Any) -> None:
            rec.keep("tokens", i + 1, out[0] if isinstance(out, (tuple, list)) else out)

        return hook

    changes.hook(enc.blocks[0].register_forward_pre_hook(start, with_kwargs=True))
    if tokens:
        for i, blk in enumerate(enc.blocks):
            changes.hook(blk.register_forward_hook(block_out(i)))


def _softmax_hooks(i: int, m: nn.Module, rec: _Recorder) -> Tuple[Callable, Callable, Callable]:
    """(pre-hook of the attention module, pre-hook of its ``attn_drop``, forward hook of the module):
    forget the last softmax, record the softmax, and raise when the forward ran without it."""

    def attn_pre(_m: nn.Module, _args: tuple) -> None:
        rec.seen[i] = False

    def softmax_seen(_m: nn.Module, args: tuple) -> None:
        rec.seen[i] = True
        rec.keep("attention", i, args[0])

    def attn_post(_m: nn.Module, _args: tuple, _out: Any) -> None:
        if not rec.seen.get(i, False):
            raise RuntimeError(
                f"the attention of block {i} ({type(m).__name__}) ran without its unfused "
                f"softmax path, so capture saw no attention; was fused_attn or forward "
                f"changed inside the capture?"
            )

    return attn_pre, softmax_seen, attn_post


def _hook_attention(attn_mods: List[nn.Module], rec: _Recorder, changes: _Changes) -> None:
    """Put every attention module on timm's unfused path (FlexAttention forward removed,
    ``fused_attn = False``) and hook its softmax."""
    for i, m in enumerate(attn_mods):
        if "forward" in m.__dict__:
            changes.drop(m, "forward")  # back to timm's forward (and its softmax) for the capture
        changes.set(m, "fused_attn", False)
        attn_pre, softmax_seen, attn_post = _softmax_hooks(i, m, rec)
        changes.hook(m.register_forward_pre_hook(attn_pre))
        changes.hook(m.attn_drop.register_forward_pre_hook(softmax_seen))
        changes.hook(m.register_forward_hook(attn_post))


@contextmanager
def capture(
    model: nn.Module,
    attention: bool = True,
    tokens: bool = True,
    dtype: Optional[torch.dtype] = torch.float32,
    on_attention: Optional[TensorHook] = None,
    on_tokens: Optional[TensorHook] = None,
) -> Iterator[Capture]:
    """Record post-softmax attention (B, H, T, T) of every block and/or the residual stream
    (B, T, C) at depth + 1 points while the ``with`` block runs forwards through ``model``.

    Records are detached and cast to ``dtype`` (None keeps the model's dtype). With ``on_attention``
    / ``on_tokens`` each record is handed to the callback as ``(index, tensor)`` instead of being
    kept, so statistics can be reduced layer by layer. Everything (fused attention flags, forward
    overrides, hooks) is restored on exit, also after an exception."""
    enc = find_encoder(model)
    attn_mods = attention_modules(enc) if attention else []
    _refuse_foreign_forwards(enc, attn_mods)
    rec = _Recorder(_empty_capture(enc), dtype, on_attention, on_tokens)
    changes = _Changes()
    try:
        _hook_tokens(enc, rec, changes, tokens)
        _hook_attention(attn_mods, rec, changes)
        yield rec.cap
    finally:
        changes.undo()


__all__ = ["Capture", "capture", "find_encoder", "attention_modules", "SUPPORTED"]
