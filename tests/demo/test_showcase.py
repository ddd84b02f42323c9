"""The demo's showcase shows each answered question's scene as the model was asked about it."""

from __future__ import annotations

from hydra_x.demo.config import smoke
from hydra_x.demo.showcase import Writer, answers_and_edits
from hydra_x.eval.prompts import prompt_set
from hydra_x.eval.shapes_run import evaluate_shapes
from hydra_x.unified.model import HydraX


class Recording(Writer):
    """A writer that also records the side of each picture it is given."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.sides: dict[str, int] = {}

    def image(self, name: str, x):
        self.sides[name] = x.shape[-1]
        return super().image(name, x)


def test_question_pictures_are_drawn_at_the_size_they_were_asked_at(tmp_path):
    model = HydraX.from_preset("tiny", seed=0).eval()
    cfg = smoke()
    asked = {}
    for question_size in (None, 96):  # the model's own (its generation size here), then another
        result = evaluate_shapes(
            model, prompt_set(), size=64, frames=5, steps=1, limit=1, round_trip=False, question_size=question_size
        )
        writer = Recording(tmp_path / str(question_size), 64)
        galleries = answers_and_edits(cfg, result, writer)
        assert galleries[0].title == "Questions"
        asked[question_size] = {side for name, side in writer.sides.items() if name.startswith("question_")}
    assert asked == {None: {64}, 96: {96}}
