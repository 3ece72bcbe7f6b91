"""One full-precision model feeds every quantized one (pretrained_checkpoint)."""


import pytest
import torch

from conftest import FAST_RUN
from helpers import build_toy_model, toy_config, train_toy_lightgcn
from recbole_quant import Config
from recbole_quant.checkpoint import load_checkpoint
from recbole_quant.errors import CheckpointError, ConfigValueError
from recbole_quant.quick_start import load_data, run_recbole_quant


@pytest.fixture(scope="module")
def lightgcn(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm")
    return train_toy_lightgcn(root, toy_config(root, embedding_size=16))


@pytest.mark.parametrize(
    "model, options",
    [
        ("HQGNN", {"embedding_size": 16}),
        ("HashGNN", {"embedding_size": 16}),
        ("HashGNN", {"embedding_size": 16, "encoder": "lightgcn"}),
        ("L2QGCN", {"embedding_size": 16, "variant": "anl"}),
    ],
)
def test_lightgcn_checkpoint_starts_every_quantized_model(lightgcn, model, options):
    data_path, path = lightgcn
    _, built, _ = build_toy_model(data_path, model, pretrained_checkpoint=path, **options)
    weights = load_checkpoint(path)["state_dict"]
    assert torch.equal(built.user_embedding.weight.detach(), weights["user_embedding.weight"])
    assert torch.equal(built.item_embedding.weight.detach(), weights["item_embedding.weight"])
    _, cold, _ = build_toy_model(data_path, model, **options)
    assert not torch.equal(cold.user_embedding.weight.detach(), weights["user_embedding.weight"])


def test_warm_started_hqgnn_trains_and_tests(lightgcn):
    data_path, path = lightgcn
    result = run_recbole_quant(
        model="HQGNN", dataset="toy",
        config_dict=toy_config(data_path, embedding_size=16, pretrained_checkpoint=path),
    )
    assert result["test_result"]["recall@5"] >= 0


def test_checkpoint_of_another_size_or_dataset_is_refused(lightgcn):
    data_path, path = lightgcn
    with pytest.raises(CheckpointError, match=r"set --embedding_size=16"):
        build_toy_model(data_path, "HQGNN", pretrained_checkpoint=path, embedding_size=32)
    with pytest.raises(CheckpointError, match="trained on dataset 'toy', not 'other'"):
        build_toy_model(data_path, "HashGNN", dataset="other", pretrained_checkpoint=path, embedding_size=16)
    with pytest.raises(CheckpointError, match="not found"):
        build_toy_model(data_path, "HQGNN", pretrained_checkpoint=path + ".missing", embedding_size=16)
    with pytest.raises(ConfigValueError, match="pretrained_checkpoint"):
        build_toy_model(data_path, "HQGNN", pretrained_checkpoint=3, embedding_size=16)


def test_a_checkpoint_of_another_split_is_refused(lightgcn, tmp_path, monkeypatch):
    """Warm starts and teachers must have trained on this run's training interactions only."""
    data_path, path = lightgcn
    build_toy_model(data_path, "HQGNN", pretrained_checkpoint=path, embedding_size=16, seed=7)  # split files
    monkeypatch.chdir(tmp_path)  # ml-100k: RecBole's random split depends on the seed
    trained = run_recbole_quant(model="LightGCN", dataset="ml-100k",
                                config_dict=dict(FAST_RUN, epochs=1, seed=2020))["checkpoint"]

    def build(seed, **options):
        config = Config(model="HQGNN", dataset="ml-100k",
                        config_dict=dict(FAST_RUN, seed=seed, **options), cmd_args=[])
        _, train_data, _, _ = load_data(config)
        return config.model_class(config, train_data._dataset)

    build(2020, pretrained_checkpoint=trained)  # same seed, same split: accepted
    with pytest.raises(CheckpointError, match=r"another split of 'ml-100k'.*--seed=2021"):
        build(2021, pretrained_checkpoint=trained)
    with pytest.raises(CheckpointError, match=r"teacher_checkpoint=.*another split.*teacher model"):
        build(2021, teacher_checkpoint=trained, distill_weight=1.0)
