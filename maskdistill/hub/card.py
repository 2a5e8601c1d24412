"""The model card (``README.md``) of a shared model: what the model is, its teacher, data and recipe
(read from the run's resolved config), its metrics, the claims table of an analysis (read from the
analysis folder's saved ``claims.csv``, so the card shows what the report shows), and how to load and
upload it. Markdown with the Hugging Face front matter (``library_name: timm``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

# The recipe rows of the card, per job kind: (dotted config key, label). The full config follows.
RECIPE_KEYS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "pretrain": (
        ("teacher.spec", "teacher (T)"),
        ("teacher.layer", "teacher block"),
        ("objective.whitening", "target whitening (N)"),
        ("student.arch", "student (S)"),
        ("decoder.kind", "decoder (D)"),
        ("decoder.tokenizer", "VQ-KD tokenizer"),
        ("mask.kind", "masks (M)"),
        ("mask.num_masked", "masked patches"),
        ("objective.loss", "objective (R)"),
    ),
    "finetune": (
        ("model.spec", "started from"),
        ("optim.layer_decay", "layer decay"),
        ("data.auto_augment", "RandAugment"),
        ("aug.label_smoothing", "label smoothing"),
    ),
    "classify": (("model.arch", "architecture"),),
}
COMMON_KEYS = (
    ("data.path", "data"),
    ("data.img_size", "image size"),
    ("train.epochs", "epochs"),
    ("train.batch_size", "batch size"),
    ("optim.lr", "peak learning rate"),
    ("optim.weight_decay", "weight decay"),
)
WHAT = {
    "pretrain": "a Vision Transformer pre-trained by masked distillation (MD): the student S learns to predict the "
    "whitened features N(T(I)) of a frozen teacher T at masked positions (L = M_out(R(N(T(I)), D(S(M_in(I))))))",
    "finetune": "an image classifier fine-tuned with maskdistill",
    "classify": "a supervised image classifier trained with maskdistill",
    "converted": "a published checkpoint converted to timm with `maskdistill convert`",
}


@dataclass
class CardFacts:
    """Everything the card states. ``config``: the run's resolved config; ``metrics``: name -> value."""

    name: str
    kind: str
    arch: str
    config: Dict[str, Any]
    metrics: Dict[str, float] = field(default_factory=dict)
    label_names: Sequence[str] = ()
    claims: Optional[str] = None  # a Markdown table
    notes: List[str] = field(default_factory=list)  # e.g. what a converter dropped


def _get(cfg: Dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def recipe_rows(kind: str, cfg: Dict[str, Any]) -> List[Tuple[str, Any]]:
    rows = [(label, _get(cfg, key)) for key, label in RECIPE_KEYS.get(kind, ()) + COMMON_KEYS]
    return [(label, v) for label, v in rows if v not in (None, "")]


def _usage(name: str, kind: str) -> str:
    feats = kind == "pretrain"
    return f"""## How to use

```python
import timm

model = timm.create_model("hf-hub:<org>/{name}", pretrained=True{", num_classes=0" if feats else ""})
# or, from this folder: timm.create_model("local-dir:/path/to/{name}", pretrained=True)
cfg = timm.data.resolve_data_config({{}}, model=model)
transform = timm.data.create_transform(**cfg)
```

In maskdistill the folder is a model spec like any other: `hf-hub:<org>/{name}` or `local-dir:<folder>`
(`maskdistill analyze --model x=local-dir:<folder>`, `maskdistill finetune model.spec=local-dir:<folder>`,
`teacher.spec=...`).

## Upload

```bash
hf upload <org>/{name} /path/to/{name} .
```
(`huggingface-cli upload <org>/{name} /path/to/{name} .` with older `huggingface_hub` versions.)
"""


def model_card(facts: CardFacts) -> str:
    """The Markdown text of the card."""
    task = "image-feature-extraction" if facts.kind == "pretrain" or not facts.label_names else "image-classification"
    tags = ["timm", "maskdistill"] + (["masked-distillation"] if facts.kind == "pretrain" else [])
    front = yaml.safe_dump({"library_name": "timm", "pipeline_tag": task, "tags": tags}, sort_keys=False).strip()
    out = [f"---\n{front}\n---", f"# {facts.name}", ""]
    out.append(f"`{facts.arch}`: {WHAT.get(facts.kind, 'a model converted to timm')}.")
    teacher = _get(facts.config, "teacher.spec")
    if facts.kind == "pretrain" and teacher:
        tok = _get(facts.config, "decoder.tokenizer") if _get(facts.config, "decoder.kind") == "tokenizer" else ""
        out.append(
            f"\n**Teacher:** `{teacher}`"
            + (f"; the targets are the codes of the VQ-KD tokenizer `{tok}` (BEiT v2)." if tok else ".")
        )
    if facts.label_names:
        shown = ", ".join(map(str, facts.label_names[:20])) + (" ..." if len(facts.label_names) > 20 else "")
        out.append(f"\n**Classes ({len(facts.label_names)}):** {shown}")
    rows = recipe_rows(facts.kind, facts.config)
    if rows:
        out += ["", "## Recipe", "", md_table(("setting", "value"), rows)]
    if facts.metrics:
        out += ["", "## Metrics", "", md_table(("metric", "value"), sorted(facts.metrics.items()))]
    if facts.claims:
        out += ["", "## Claims of the paper's analysis (teacher → MD student)", "", facts.claims]
    if facts.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in facts.notes]
    out += ["", _usage(facts.name, facts.kind)]
    if facts.config:
        dumped = yaml.safe_dump(facts.config, sort_keys=False)
        out += ["<details><summary>Resolved config</summary>", "", "```yaml", dumped.rstrip(), "```", "</details>", ""]
    return "\n".join(out)


__all__ = ["CardFacts", "md_table", "model_card", "recipe_rows"]
