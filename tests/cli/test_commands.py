"""The command table of ``maskdistill``: the parser holds exactly the listed commands, each with a
one-line help and a ``--help`` that shows a usage example, and ``python -m maskdistill`` is the same
command (exit codes included)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from maskdistill import cli
from maskdistill.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
NAMES = (
    "demo",
    "pretrain",
    "classify",
    "finetune",
    "sweep",
    "tokenizer",
    "analyze",
    "report",
    "decisions",
    "export",
    "convert",
)


def _subcommands(parser) -> dict:
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action


def test_the_parser_lists_exactly_the_commands_in_order():
    action = _subcommands(build_parser())
    assert tuple(action.choices) == NAMES
    assert [m.__name__ for m in COMMANDS] == [f"maskdistill.cli.{n}" for n in NAMES]
    helps = {c.dest: c.help for c in action._choices_actions}
    assert set(helps) == set(NAMES)
    assert all(h and "\n" not in h for h in helps.values()), helps


def test_every_command_module_registers_its_run():
    parser = build_parser()
    argv = {
        "demo": ["demo"],
        "pretrain": ["pretrain", "demo", "--out", "x"],
        "classify": ["classify", "demo_teacher", "--out", "x"],
        "finetune": ["finetune", "demo", "--out", "x"],
        "sweep": ["sweep", "lr", "demo", "--model", "a=b", "--out", "x"],
        "tokenizer": ["tokenizer", "train", "demo", "--out", "x"],
        "analyze": ["analyze", "--model", "a=b", "--data", "builtin:val", "--out", "x"],
        "report": ["report", "x"],
        "decisions": ["decisions", "--raw-data", "x"],
        "export": ["export", "runs/x", "--out", "x"],
        "convert": ["convert", "--format", "fd", "ck.pth", "--out", "x"],
    }
    for module, name in zip(COMMANDS, NAMES):
        args = parser.parse_args(argv[name])
        assert args.func is module.run, name


@pytest.mark.parametrize("argv", [[name] for name in NAMES if name != "tokenizer"] + [["tokenizer", "train"]])
def test_each_command_help_shows_its_usage_example(argv, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    example = text.split("example:", 1)[1]
    assert f"maskdistill {' '.join(argv)}" in example, text
    assert "issue" not in text.lower() and "DESIGN.md" not in text


def test_python_dash_m_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "maskdistill", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    listed = out.stdout.split("positional arguments:", 1)[1]
    for name in NAMES:
        assert f"\n    {name}" in listed, name
    assert "exit codes:" in out.stdout and "torchrun --nproc_per_node=8 -m maskdistill pretrain" in out.stdout


def test_python_dash_m_passes_the_exit_code_on(tmp_path):
    """``sys.exit(main())``: a config typo through ``python -m`` exits 2 with one line, nothing written."""
    argv = ["pretrain", "demo", "optim.lrr=1", "--out", str(tmp_path / "run"), "--dry-run"]
    out = subprocess.run([sys.executable, "-m", "maskdistill", *argv], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "maskdistill: error: invalid config value for optim.lrr: Key 'lrr' not in 'OptimConfig'. Did you mean: 'lr'?"
    ]
    assert not (tmp_path / "run").exists()


def test_an_argparse_mistake_exits_2(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["pretrain", "demo"])  # --out missing
    assert done.value.code == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        cli.main(["pretrian"])
    assert done.value.code == 2
