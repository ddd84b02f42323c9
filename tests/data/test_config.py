"""DataConfig validation and round trips."""

from __future__ import annotations

import pytest

from hydra_x.data import DataConfig, SourceConfig


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 100}, "multiple of size_multiple"),
        ({"clip_frames": 6}, "1 \\+ T"),
        ({"fps": 0.0}, "fps"),
        ({"frame_stride": 0}, "frame_stride"),
        ({"image_batch_size": 0}, "image_batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"mp_context": "thread"}, "mp_context"),
        ({"sources": ()}, "empty"),
        ({"sources": (SourceConfig("embedded_images", weight=0),)}, "weight 0"),
    ],
)
def test_invalid_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**kwargs)


def test_invalid_sources():
    with pytest.raises(ValueError, match="unknown data source kind"):
        SourceConfig("images")
    with pytest.raises(ValueError, match="needs a path"):
        SourceConfig("image_folder")
    with pytest.raises(ValueError, match="takes no path"):
        SourceConfig("embedded_images", "/data")
    with pytest.raises(ValueError, match="weights"):
        SourceConfig("embedded_videos", weight=-1)


def test_round_trip():
    cfg = DataConfig(sources=(SourceConfig("image_shards", "/d/train-{000..009}.tar", 2.0),), fps=8.0)
    again = DataConfig.from_dict(cfg.to_dict())
    assert again == cfg and isinstance(again.sources[0], SourceConfig)
    assert cfg.batch_size("image") == 8 and cfg.batch_size("video") == 2
