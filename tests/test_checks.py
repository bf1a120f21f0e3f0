"""Settings that would fail or mean nothing after training are refused before it, in one line."""

import json

import pytest

from genzoo import load_config, run
from genzoo.errors import ConfigError, TrainingFailed

TINY = ["model=ae", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=2", "budget.limit_val_batches=1",
        "budget.n_test=32", "progress_bar=false", "logger=none", "budget.curve_points=0"]


@pytest.mark.parametrize("override,message", [
    ("seed=4294967296", "seed=4294967296 is invalid: it must be an integer in 0..4294967295"),
    ("budget.limit_train_batches=-1", "budget.limit_train_batches=-1 is invalid"),
    ("budget.limit_train_batches=0", "budget.limit_train_batches=0 is invalid"),
    ("budget.limit_train_batches=1.5", "budget.limit_train_batches=1.5 is invalid"),
])
def test_out_of_range_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config([override])


@pytest.mark.parametrize("overrides,message", [
    (["data.batch_size=100000", "eval=none"], "data.batch_size=100000 is larger than the training split (54000 images)"),
    (["budget.eval_samples=3"], "budget.eval_samples=3 scores 3 samples, not above eval.pr_k=3"),
    (["hardware.accelerator=gpu", "eval=none"], "needs a CUDA GPU and this machine shows none"),
])
def test_checks_before_training_stop_with_one_line_and_train_nothing(overrides, message, data_root, tmp_path):
    pytest.importorskip("torch")
    import torch

    if "hardware.accelerator=gpu" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = load_config([*TINY, f"data.root={data_root}", f"output_dir={tmp_path}", *overrides])
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()


def test_an_unwritable_evaluation_cache_is_refused_before_training(data_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cfg = load_config([*TINY, f"data.root={data_root}", f"output_dir={tmp_path / 'run'}", f"eval.cache_dir={blocker}"])
    with pytest.raises(ConfigError, match="evaluation cache .* is not a writable directory"):
        run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_share_of_the_epoch_below_one_batch_is_refused_in_one_line(data_root, tmp_path):
    cfg = load_config([*TINY, "budget.limit_train_batches=0.0001", "eval=none", f"data.root={data_root}", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"budget.limit_train_batches=0.0001 is less than one of the 421 training batches"):
        run(cfg)


def test_a_run_that_trains_zero_steps_is_failed_not_completed(data_root, tmp_path, monkeypatch):
    # the backstop after fit: a training loader that yields nothing (no check before training saw it coming)
    from genzoo.data.datamodule import ImageDataModule

    monkeypatch.setattr(ImageDataModule, "train_dataloader", lambda self: [])
    cfg = load_config([*TINY, "eval=none", f"data.root={data_root}", f"output_dir={tmp_path}"])
    with pytest.raises(TrainingFailed, match="trained zero steps"):
        run(cfg)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed" and "zero steps" in record["failure"] and record["metrics"] == {}


def test_the_printed_resume_command_is_quoted_for_a_shell(tmp_path, monkeypatch):
    import shlex

    from hydra.core.hydra_config import HydraConfig

    from genzoo.training.resume import resume_command

    class Fake:
        overrides = type("O", (), {"task": ["model=vae", "budget.max_epochs=3"]})()

    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: Fake()))
    command = resume_command(None, tmp_path / "a run dir")
    assert shlex.split(command)[3:] == ["model=vae", "budget.max_epochs=3", f"hydra.run.dir={tmp_path / 'a run dir'}", "resume=auto"]


def test_idx_intact_tells_a_whole_file_from_a_damaged_one(tmp_path):
    from genzoo.data.sources import idx_intact

    whole = tmp_path / "labels"
    whole.write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    assert idx_intact(whole)
    for name, content in [("empty", b""), ("truncated", whole.read_bytes()[:-1]), ("foreign", b"GIF89a" + bytes(10))]:
        (tmp_path / name).write_bytes(content)
        assert not idx_intact(tmp_path / name), name


@pytest.mark.parametrize("damage", ["zero bytes", "truncated", "wrong magic"])
def test_a_damaged_dataset_file_is_repaired_from_the_system_copy(damage, data_root, tmp_path):
    import shutil

    from genzoo.data.sources import load_split

    load_split("fashion_mnist", data_root, train=False, download=False)  # the session root holds the files
    shutil.copytree(data_root / "FashionMNIST", tmp_path / "FashionMNIST")
    labels = tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.write_bytes({"zero bytes": b"", "truncated": good[:100], "wrong magic": b"\xff" * len(good)}[damage])
    images, y = load_split("fashion_mnist", tmp_path, train=False, download=False)
    assert len(y) == 10000 and labels.read_bytes() == good


def test_a_data_root_that_is_a_file_is_one_line(tmp_path):
    from genzoo.data.sources import load_split
    from genzoo.errors import DatasetNotFoundError

    (tmp_path / "f").write_text("x")
    with pytest.raises(DatasetNotFoundError, match="is a file, not a directory") as err:
        load_split("fashion_mnist", tmp_path / "f", train=False, download=False)
    assert "\n" not in str(err.value)


def test_a_run_config_that_is_not_yaml_is_one_line(tmp_path):
    from genzoo.models.build import read_run_config

    (tmp_path / "config.yaml").write_text(": : not yaml [\n")
    with pytest.raises(ConfigError, match="is not a readable config") as err:
        read_run_config(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(ConfigError, match="not a genzoo run config"):
        read_run_config(tmp_path)


def test_the_report_refuses_an_out_that_is_a_file(tmp_path, capsys):
    from genzoo.report.__main__ import main

    (tmp_path / "out").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "is a file" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint"])
def test_a_damaged_cached_classifier_is_trained_again_not_fatal(damage, data_root, tmp_path, monkeypatch, capsys):
    import torch

    from genzoo.data import ImageDataModule, sources
    from genzoo.metrics import classifier

    def small_split(name, root, train, download):  # 256 images: the retraining is what is tested, not its accuracy
        images, labels = load_split(name, root, train=train, download=download)
        return images[:256], labels[:256]

    load_split = sources.load_split
    monkeypatch.setattr(sources, "load_split", small_split)
    recipe = classifier.ClassifierRecipe(width=4, feature_dim=8, epochs=1, batch_size=64)
    data = ImageDataModule(name="fashion_mnist", root=str(data_root))
    first, _ = classifier.load_or_train_classifier(data, tmp_path, recipe, progress=False)
    path = classifier.classifier_path(tmp_path, data.name, recipe)
    path.write_bytes(path.read_bytes()[:100] if damage == "truncated" else b"not a checkpoint")
    net, card = classifier.load_or_train_classifier(data, tmp_path, recipe, progress=False)
    assert "cannot be loaded" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), net.state_dict().values()))  # same seed, same weights
    assert torch.load(path, weights_only=True)["dataset"] == "fashion_mnist"  # the file is whole again


def test_the_shipped_fashion_mnist_classifier_loads_without_training_and_classifies_the_test_split(data_root, tmp_path, monkeypatch):
    import hashlib

    from genzoo.data import ImageDataModule
    from genzoo.data.device import to_unit_range
    from genzoo.data.sources import load_split
    from genzoo.metrics import classifier

    def no_training(*args, **kwargs):
        raise AssertionError("the shipped weights should have been loaded, not trained again")

    monkeypatch.setattr(classifier.L, "Trainer", no_training)
    data = ImageDataModule(name="fashion_mnist", root=str(data_root))
    shipped = classifier.shipped_path("fashion_mnist", classifier.RECIPES["fashion_mnist"])
    assert shipped.is_file(), "genzoo ships the Fashion-MNIST classifier for its current recipe: retrain and ship it after a recipe change"
    net, card = classifier.load_or_train_classifier(data, tmp_path, progress=False)  # an empty cache: only the shipped file
    assert card["weights_source"] == "shipped with genzoo" and card["weights_sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    images, labels = load_split(data.name, data.root, train=False, download=data.download)
    assert classifier.accuracy(net, to_unit_range(images), labels) == pytest.approx(card["test_accuracy"], abs=1e-6)
    assert card["test_accuracy"] > 0.92
    assert not list(tmp_path.rglob("*.pt"))  # nothing trained, nothing written to the cache
