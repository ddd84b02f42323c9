"""What a resumed run reports of its config against its checkpoint's: every changed, added or removed setting."""

from __future__ import annotations

from hydra_x.train.engine import config_changes
from hydra_x.train.unified.recipes import small


def test_changes_are_named_by_dotted_key_with_both_values():
    saved = {"steps": 10, "model": {"chat_template": "llm", "size": [64, 64], "gone": 1}, "out_dir": "runs/a"}
    current = {"steps": 10, "model": {"chat_template": "chatml", "size": [64, 32], "new": None}, "out_dir": "runs/a"}
    assert config_changes(saved, current) == [
        "model.chat_template: 'llm' -> 'chatml'",
        "model.gone: 1 -> (unset)",
        "model.new: (unset) -> None",
        "model.size: [64, 64] -> [64, 32]",
    ]
    assert config_changes(saved, saved) == []


def test_a_recipe_against_itself_changes_nothing_and_a_preset_edit_is_seen():
    saved = small().to_dict()
    assert config_changes(saved, small().to_dict()) == []
    saved["model"]["chat_template"], saved["row_multiple"] = "llm", 8  # the `small` recipe's former settings
    assert config_changes(saved, small().to_dict()) == [
        "model.chat_template: 'llm' -> 'chatml'",
        "row_multiple: 8 -> 4",
    ]
