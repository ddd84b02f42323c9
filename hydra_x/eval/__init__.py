"""Evaluation: reconstruction metrics (PSNR, SSIM matching scikit-image) and Frechet distances (FID, FVD)."""

from hydra_x.eval.features import FeatureNet, FeatureWeightsError, load_feature_net
from hydra_x.eval.frechet import GaussianStats, frechet_distance
from hydra_x.eval.metrics import psnr, ssim, video_psnr, video_ssim
from hydra_x.eval.protocols import PROTOCOLS, Protocol, resolve_protocol
from hydra_x.eval.recon import ReconOptions, ReconResult, evaluate
from hydra_x.eval.tiny import save_tiny_feature_net

__all__ = [
    "FeatureNet",
    "FeatureWeightsError",
    "GaussianStats",
    "PROTOCOLS",
    "Protocol",
    "ReconOptions",
    "ReconResult",
    "evaluate",
    "frechet_distance",
    "load_feature_net",
    "psnr",
    "resolve_protocol",
    "save_tiny_feature_net",
    "ssim",
    "video_psnr",
    "video_ssim",
]
