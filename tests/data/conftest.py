from tests.media_fixtures import (  # noqa: F401 - fixtures
    bad_image_dir,
    bad_image_shards,
    bad_video_dir,
    image_dir,
    image_shards,
    video_dir,
    video_shards,
)
