"""pcnets: predictive-coding feedback for pretrained CNNs (Predify), reproduced and extended."""

from pcnets.backbones import build_pnet
from pcnets.core.classifier import classifier
from pcnets.core.pnet import PredictiveNet, Step

__all__ = ["PredictiveNet", "Step", "build_pnet", "classifier"]
__version__ = "0.1.0"
