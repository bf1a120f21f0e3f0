"""One LightningModule per family, all implementing GenerativeModel."""

from genzoo.models.autoencoder import Autoencoder
from genzoo.models.base import GenerativeModel
from genzoo.models.ddpm import DDPM
from genzoo.models.vae import VAE

__all__ = ["DDPM", "VAE", "Autoencoder", "GenerativeModel"]
