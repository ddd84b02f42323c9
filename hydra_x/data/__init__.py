"""Data: reading and writing images and videos as [-1, 1] tensors (the CLI and the training pipeline)."""
