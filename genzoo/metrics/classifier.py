"""The `classifier` feature extractor: a domain classifier per dataset, shipped with genzoo or trained once and cached.

Its penultimate ReLU features (128-d) give classifier-FID/KID/precision/recall and the
memorisation test; its logits give classifier-IS and class coverage. The weights file is
keyed by the dataset and a hash of everything that shapes the weights (architecture,
recipe, seed, code version), so a change to any of them trains a new classifier instead
of reusing a stale one.

genzoo ships the Fashion-MNIST classifier's weights (genzoo/metrics/weights/), trained once
with its recipe: the same recipe trained on two CPUs gave different weights (floating-point
order), so FIDs measured on different machines compared features of different nets. With
the shipped file every machine scores with the same net; datasets without one train their
own on first use.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from genzoo.artifacts import atomic_torch_save, file_lock
from genzoo.nets.classifier import DomainClassifier

RECIPE_VERSION = 1  # bump when the training code changes what the weights become


@dataclass(frozen=True)
class ClassifierRecipe:
    """How the domain classifier is trained: on the full train split, tested on the test split."""

    width: int = 32
    feature_dim: int = 128
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    flip: bool = True  # random horizontal flips (not for digits)
    seed: int = 0
    version: int = RECIPE_VERSION

    def key(self) -> str:
        """12 hex digits of the SHA-256 of the recipe: part of the cache file name."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


# Per dataset: Fashion-MNIST reaches 92.3% test accuracy in ~90 s on 2 CPU cores (measured);
# the MNIST and CIFAR-10 recipes could not be checked offline here.
RECIPES = {
    "mnist": ClassifierRecipe(flip=False),
    "fashion_mnist": ClassifierRecipe(),
    "cifar10": ClassifierRecipe(width=64, feature_dim=256, epochs=20),
}


class _Trainee(L.LightningModule):
    def __init__(self, net: DomainClassifier, lr: float, flip: bool):
        super().__init__()
        self.net, self.lr, self.flip = net, lr, flip

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.flip:
            x = torch.where(torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5, x, x.flip(3))
        loss = F.cross_entropy(self.net(x)[1], y)
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        steps = self.trainer.estimated_stepping_batches
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.OneCycleLR(opt, self.lr, total_steps=steps), "interval": "step"}}


@torch.no_grad()
def accuracy(net: DomainClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in [0, 1] of `net` (eval mode) on float images (N, C, H, W) in [-1, 1]."""
    net.eval()
    correct = sum((net(images[i : i + batch_size])[1].argmax(1) == labels[i : i + batch_size]).sum().item() for i in range(0, len(images), batch_size))
    return correct / len(images)


SHIPPED_DIR = Path(__file__).parent / "weights"  # the classifiers genzoo ships (package data)


def classifier_path(cache_dir: Path, dataset: str, recipe: ClassifierRecipe) -> Path:
    """The cache file of the classifier for `dataset` trained with `recipe`."""
    return Path(cache_dir) / "classifiers" / f"{dataset}-{recipe.key()}.pt"


def shipped_path(dataset: str, recipe: ClassifierRecipe) -> Path:
    """Where genzoo's shipped weights for `dataset` and `recipe` would be (the file may not exist)."""
    return SHIPPED_DIR / f"{dataset}-{recipe.key()}.pt"


def load_or_train_classifier(data, cache_dir: Path, recipe: ClassifierRecipe | None = None, progress: bool = True) -> tuple[DomainClassifier, dict]:
    """The domain classifier for the data module's dataset, and its card.

    Loads the weights genzoo ships for this dataset and recipe hash (`shipped_path`) when
    there are some (so every machine scores with one net), else the cache file when one
    exists; a file that cannot be loaded (truncated, damaged) is passed over with a warning. Without a loadable file it trains
    the classifier on the whole train split (train + val of the data module: the test split
    is never seen), measures test accuracy, and writes the cache file atomically (a damaged
    cache file is replaced).
    The card: dataset, recipe and its hash, test accuracy, file, source and SHA-256 of the weights.
    `data` is an ImageDataModule (name, root, image_shape, num_classes); `recipe` None
    takes RECIPES[data.name].
    """
    recipe = recipe or RECIPES.get(data.name, ClassifierRecipe())
    path = classifier_path(cache_dir, data.name, recipe)
    with file_lock(path):  # runs starting at once: one trains, the others wait and load its file
        return _load_or_train(path, data, recipe, progress)


def _load_or_train(path: Path, data, recipe: ClassifierRecipe, progress: bool):
    from genzoo.data.datamodule import UInt8Images, to_unit_range
    from genzoo.data.sources import load_split

    for candidate, source in ((shipped_path(data.name, recipe), "shipped with genzoo"), (path, "trained on this machine (cached)")):
        if not candidate.is_file():
            continue
        try:
            saved = torch.load(candidate, map_location="cpu", weights_only=True)
            net = DomainClassifier(data.image_shape, data.num_classes, recipe.width, recipe.feature_dim)
            net.load_state_dict(saved["state_dict"])
            return net.eval(), _card(data.name, recipe, float(saved["test_accuracy"]), candidate, source)
        except Exception as err:  # noqa: BLE001 - a truncated, foreign or damaged file: train again, as for reference features
            print(f"genzoo: warning: the classifier file {candidate} cannot be loaded ({type(err).__name__}): passing it over", flush=True)

    print(f"genzoo: training the {data.name} domain classifier once (cached as {path})", flush=True)
    images, labels = load_split(data.name, data.root, train=True, download=data.download)
    generator = torch.Generator().manual_seed(recipe.seed)
    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        net = DomainClassifier(data.image_shape, data.num_classes, recipe.width, recipe.feature_dim)
        loader = torch.utils.data.DataLoader(
            UInt8Images(images, labels), batch_size=recipe.batch_size, shuffle=True, generator=generator, collate_fn=_identity
        )
        trainer = L.Trainer(
            max_epochs=recipe.epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
            enable_model_summary=False, enable_progress_bar=progress,
        )
        trainer.fit(_Trainee(net, recipe.lr, recipe.flip), loader)
    net = net.cpu().eval()
    test_images, test_labels = load_split(data.name, data.root, train=False, download=data.download)
    test_accuracy = accuracy(net, to_unit_range(test_images), test_labels)
    atomic_torch_save({"state_dict": net.state_dict(), "test_accuracy": test_accuracy, "recipe": asdict(recipe), "dataset": data.name}, path)
    print(f"genzoo: {data.name} domain classifier test accuracy {test_accuracy:.4f}", flush=True)
    return net, _card(data.name, recipe, test_accuracy, path, "trained on this machine (cached)")


def _identity(batch):
    return batch  # UInt8Images.__getitems__ already returns a whole batch


def _card(dataset: str, recipe: ClassifierRecipe, test_accuracy: float, path: Path, source: str) -> dict:
    return {
        "extractor": f"genzoo domain classifier for {dataset}, penultimate {recipe.feature_dim}-d ReLU features",
        "recipe": asdict(recipe),
        "recipe_hash": recipe.key(),
        "test_accuracy": test_accuracy,
        "weights_file": str(path),
        "weights_source": source,
        "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "resize": "none (native resolution)",
    }
