from tests.media_fixtures import bad_image_dir, bad_image_shards, bad_video_dir, image_dir  # noqa: F401 - fixtures
