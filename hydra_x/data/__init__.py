"""Data: reading and writing images and videos as [-1, 1] tensors (the CLI), and the tokenizer's training data.

Training data: :class:`DataConfig` lists the sources (the embedded set built from scikit-image's
photographs, image / video folders, WebDataset shards) and :class:`TokenizerDataLoader` turns it into an
endless, exactly resumable stream of image-only and video-only :class:`Batch` es.
"""

from hydra_x.data.config import DataConfig, SourceConfig
from hydra_x.data.embedded import HELDOUT_PHOTOS, TRAIN_PHOTOS, heldout_clips, heldout_images, heldout_photo
from hydra_x.data.loader import Batch, TokenizerDataLoader, step_kinds

__all__ = [
    "HELDOUT_PHOTOS",
    "TRAIN_PHOTOS",
    "Batch",
    "DataConfig",
    "SourceConfig",
    "TokenizerDataLoader",
    "heldout_clips",
    "heldout_images",
    "heldout_photo",
    "step_kinds",
]
