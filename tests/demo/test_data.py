"""The demo's tokenizer data: the rendered shapes-world scenes."""

from __future__ import annotations

from hydra_x.demo.data import write_shapes_images


def test_shapes_images_are_written_once(tmp_path):
    folder = write_shapes_images(tmp_path / "shapes", 64, 5)
    assert sorted(p.name for p in folder.iterdir()) == [f"{k:06d}.png" for k in range(5)]
    stamp = (folder / "000000.png").stat().st_mtime_ns
    assert write_shapes_images(folder, 64, 5) == folder and (folder / "000000.png").stat().st_mtime_ns == stamp
