"""The ``LEFT=RIGHT`` options of the commands: ``--model NAME=SPEC``, ``--pair TEACHER=STUDENT``,
``--sharpness NAME=RUN`` and ``--param PROBE.KEY=VALUE`` are read by one parser."""

from __future__ import annotations

import pytest

from maskdistill.cli.analyze import parse_params
from maskdistill.cli.common import parse_models, parse_pair
from maskdistill.errors import UsageError


def test_parse_pair_splits_at_the_first_equals_sign_and_strips():
    assert parse_pair("clip=md", "--pair", "clip=md") == ("clip", "md")
    assert parse_pair(" vit = timm:x?img_size=224&num_classes=0 ", "--model", "a=b") == (
        "vit",
        "timm:x?img_size=224&num_classes=0",
    )


@pytest.mark.parametrize("text", ["clip", "=md", "clip=", " = ", ""])
def test_parse_pair_refuses_a_missing_side_and_shows_the_example(text):
    with pytest.raises(UsageError) as err:
        parse_pair(text, "--pair", "clip=md")
    assert str(err.value) == f"--pair {text!r}: expected LEFT=RIGHT with both sides given, e.g. --pair clip=md"


def test_parse_models_keeps_the_order_and_refuses_a_name_twice():
    models = parse_models(["md=runs/md", "clip=timm:vit_base_patch16_clip_224.openai?img_size=224"])
    assert list(models.items()) == [("md", "runs/md"), ("clip", "timm:vit_base_patch16_clip_224.openai?img_size=224")]
    assert parse_models([]) == {}
    with pytest.raises(UsageError, match=r"the name 'md' is given twice"):
        parse_models(["md=runs/a", "clip=timm:x", "md=runs/b"])
    with pytest.raises(UsageError, match=r"--model 'runs/md': expected LEFT=RIGHT .* --model deit=timm:"):
        parse_models(["runs/md"])


def test_parse_params_reads_literals_and_words():
    items = ["attention_map.layers=[3, 12]", "hessian_trace.tol=0.5", "token_singular_values.of=features"]
    params = parse_params(items)
    assert params == {
        "attention_map": {"layers": [3, 12]},
        "hessian_trace": {"tol": 0.5},
        "token_singular_values": {"of": "features"},
    }
    with pytest.raises(UsageError, match=r"expected PROBE\.KEY=VALUE"):
        parse_params(["layers=[12]"])
    with pytest.raises(UsageError, match=r"expected LEFT=RIGHT"):
        parse_params(["attention_map.layers"])
