"""One LightningModule per family, all implementing GenerativeModel."""

from genzoo.models.autoencoder import Autoencoder
from genzoo.models.base import GenerativeModel
from genzoo.models.ddpm import DDPM
from genzoo.models.gan import GAN
from genzoo.models.pixelcnn import PixelCNN
from genzoo.models.vae import VAE

__all__ = ["DDPM", "GAN", "VAE", "Autoencoder", "GenerativeModel", "PixelCNN"]
