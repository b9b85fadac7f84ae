"""The README's custom-model example, run verbatim: ``ottt_jax.train(model=..., data=...)``."""

import pathlib

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _custom_model_block() -> str:
    section = README.read_text().split("\n## Core API", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_custom_model_trains_through_one_train_call(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_custom_model_block(), "README.md", "exec"), scope)
    result = scope["result"]
    assert [h.epoch for h in result.history] == [1, 2, 3]  # one entry per epoch
    assert [h.step for h in result.history] == [4, 8, 12]  # 64 images / batch 16
    assert all(h.test_accuracy is not None for h in result.history)  # eval_every_epochs=1
    assert result.history[-1].loss < result.history[0].loss
    assert result["test_accuracy"] == result.history[-1].test_accuracy >= 0.9
    assert "epoch 3: loss" in capsys.readouterr().out
    # The data was registered for the call only.
    from ottt_jax import data

    assert not [n for n in data.dataset_names() if n.startswith("arrays-")]
