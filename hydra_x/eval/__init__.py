"""Evaluation: image and video reconstruction metrics (PSNR, SSIM) matching scikit-image."""

from hydra_x.eval.metrics import psnr, ssim, video_psnr, video_ssim

__all__ = ["psnr", "ssim", "video_psnr", "video_ssim"]
