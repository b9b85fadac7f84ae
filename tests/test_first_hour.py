"""The README's training examples, run in sequence in one directory as a new user would."""

import ast
import os
import pathlib
import re
import shlex

from ottt_jax import config as config_lib
from ottt_jax.training import cli
from ottt_jax.training.logging import read_metrics
from ottt_jax.training.workdir import LOCK_NAME

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SHRINK = ["max_train_steps=2", "progress=false"]  # RESUMABLE_KEYS: the same workdirs as unshrunk


def _training_section() -> str:
    text = README.read_text()
    return text.split("\n## Training\n", 1)[1].split("\n## ", 1)[0]


def _commands(section: str) -> list[list[str]]:
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def _flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_readme_examples_run_in_sequence_without_a_collision(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    section = _training_section()
    presets = set(config_lib.list_presets()) - {"digits"}
    skipped: set[str] = set()  # workdirs of the examples that need downloaded data
    ran = []
    for args in _commands(section):
        tool, rest = args[0], args[1:]
        if tool == "ottt-train":
            if _flag(rest, "--config") in presets:
                skipped.add(_flag(rest, "--workdir"))
                continue
            if "--list" not in rest and "--list-keys" not in rest and "--print-config" not in rest:
                rest = [*rest, *(x for kv in SHRINK for x in ("--set", kv))]
            rc = cli.cli_train(rest)
        elif tool == "ottt-eval":
            if _flag(rest, "--workdir") in skipped:
                continue
            rc = cli.cli_eval(rest)
        else:
            raise AssertionError(f"README example with an unknown tool: {args}")
        out = capsys.readouterr()
        assert rc == 0, (args, out.err)
        assert "Traceback" not in out.err
        ran.append(args)
    calls = re.findall(r"ottt_jax\.train\(\"digits\", (\[.*?\])\)", section)
    assert calls, "the README's Python example is missing"
    import ottt_jax

    for overrides in calls:
        r = ottt_jax.train("digits", [*ast.literal_eval(overrides), *SHRINK])
        assert r["steps"] == 2
        ran.append(overrides)
    assert len(ran) >= 7  # every digits example ran (3 trainings, lists, config, eval, Python)

    made = sorted(os.listdir(tmp_path / "runs"))
    mentioned = sorted(set(re.findall(r"runs/(digits[\w-]*)", section)))
    assert made == mentioned == ["digits-bptt", "digits-ottt_a", "digits-ottt_a-e73fa54f"]
    for name in made:
        wd = tmp_path / "runs" / name
        assert (wd / "config.json").is_file() and not (wd / LOCK_NAME).exists()
        steps = [r["step"] for r in read_metrics(str(wd / "metrics.jsonl")) if r["kind"] == "train"]
        assert steps == [2]
