"""The tokenizer's shapes-world data: rendered scenes and clips, written once."""

from __future__ import annotations

from hydra_x.data.media import read_image
from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.data.video import read_video
from hydra_x.demo.data import write_shapes_clips, write_shapes_images


def test_shapes_images_are_written_once(tmp_path):
    folder = write_shapes_images(tmp_path / "shapes", 64, 5)
    assert sorted(p.name for p in folder.iterdir()) == [f"{k:06d}.png" for k in range(5)]
    stamp = (folder / "000000.png").stat().st_mtime_ns
    assert write_shapes_images(folder, 64, 5) == folder and (folder / "000000.png").stat().st_mtime_ns == stamp
    truth = ShapesTasks(0, "train", 64, 5).example("image_gen", 3).visuals[0].pixels
    assert (read_image(folder / "000003.png") - truth).abs().max() <= 1 / 127.5 + 1e-6  # PNG: 8-bit exact


def test_shapes_clips_decode_to_the_rendered_clips_and_are_written_once(tmp_path):
    folder = write_shapes_clips(tmp_path / "clips", 32, 5, 3)
    assert sorted(p.name for p in folder.iterdir()) == [f"{k:06d}.mp4" for k in range(3)]
    truth = ShapesTasks(0, "train", 32, 5).example("video_gen", 2).visuals[0].pixels  # (3, F, H, W)
    clip, _ = read_video(folder / "000002.mp4")
    assert clip.shape == truth.shape
    # near-lossless H.264: the colours the tokenizer must learn survive (4:2:0 chroma blurs only the edges), and
    # it is that clip: far nearer it than another clip of the world
    other = ShapesTasks(0, "train", 32, 5).example("video_gen", 1).visuals[0].pixels
    assert (clip - truth).abs().mean() < 0.01 and (clip - truth).abs().mean() < 0.3 * (clip - other).abs().mean()
    stamp = (folder / "000000.mp4").stat().st_mtime_ns
    assert write_shapes_clips(folder, 32, 5, 3) == folder and (folder / "000000.mp4").stat().st_mtime_ns == stamp
