"""Fast full-sort evaluation: identical metrics to RecBole's standard path.

On a toy fixed-split dataset (the equality does not depend on the data's size; 1-bit codes
of a small model tie heavily, which is what the tie rule must get right).
"""

import os

import pytest
import torch
from recbole.evaluator import Collector

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant import Config
from recbole_quant.errors import ConfigValueError
from recbole_quant.evaluation import topk_hits, user_lists
from recbole_quant.quick_start import load_data
from recbole_quant.trainer import get_trainer


def test_topk_hits_equals_dense_collector_rows():
    torch.manual_seed(0)
    scores = torch.randn(5, 30)
    positive_u = torch.tensor([0, 0, 1, 3, 3, 3, 4])
    positive_i = torch.tensor([2, 9, 4, 1, 2, 29, 0])
    _, topk_idx = torch.topk(scores, 10)
    pos_matrix = torch.zeros_like(scores, dtype=torch.int)
    pos_matrix[positive_u, positive_i] = 1
    dense = torch.cat([pos_matrix.gather(1, topk_idx), pos_matrix.sum(1, keepdim=True)], 1)
    assert torch.equal(topk_hits(topk_idx, positive_u, positive_i, 30), dense)


def test_user_lists_add_padding_item_sort_and_slice():
    class Loader:  # the three per-user lists RecBole's FullSortEvalDataLoader keeps
        uid_list = torch.tensor([1, 3])
        uid2history_item = [None, torch.tensor([7, 2]), None, torch.tensor([5])]
        uid2positive_item = [None, torch.tensor([4]), None, torch.tensor([6, 9])]

    loader = Loader()
    users, history, positives = user_lists(loader)
    assert users.tolist() == [1, 3]
    indptr, items = history.rows(0, 2)
    assert indptr.tolist() == [0, 3, 5] and items.tolist() == [0, 2, 7, 0, 5]
    indptr, items = positives.rows(1, 2)
    assert indptr.tolist() == [0, 2] and items.tolist() == [6, 9]
    assert user_lists(loader)[1] is history  # built once per loader


def toy_config(model, **options):
    data_path = make_toy_benchmark(os.path.join(os.getcwd(), "data"), n_users=150, n_items=120,
                                   per_user=20)
    options = dict(FAST_RUN, data_path=data_path, topk=[5, 10, 20], **options)
    return Config(model=model, dataset="toy", config_dict=options, cmd_args=[])


def test_sparse_collector_matches_recbole_collector_for_a_baseline():
    config = toy_config("BPR", epochs=1)
    _, train_data, valid_data, _ = load_data(config)
    model = config.model_class(config, train_data._dataset)
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.fit(train_data, None, saved=False)
    ours = trainer.evaluate(valid_data, load_best_model=False)
    trainer.eval_collector = Collector(config)  # RecBole's own
    theirs = trainer.evaluate(valid_data, load_best_model=False)
    assert ours == theirs


def test_bad_eval_path_is_rejected():
    with pytest.raises(ConfigValueError, match="eval_path"):
        Config(model="BPR", dataset="ml-100k", config_dict={"eval_path": "fast"}, cmd_args=[])


@pytest.mark.parametrize(
    "model, options",
    [
        ("HQGNN", {"bits": 1}),
        ("HQGNN", {"bits": 2}),
        ("HashGNN", {"encoder": "lightgcn"}),
        ("L2QGCN", {}),
    ],
)
def test_packed_and_standard_paths_give_identical_metrics(model, options):
    config = toy_config(
        model, epochs=2, metrics=["Recall", "NDCG", "Hit", "Precision", "MRR", "MAP"], **options
    )
    _, train_data, valid_data, test_data = load_data(config)
    net = config.model_class(config, train_data._dataset)
    trainer = get_trainer(config, config.model_class)(config, net)
    trainer.fit(train_data, None, saved=False)
    assert trainer.packed_eval_enabled(test_data)
    packed = trainer.evaluate(test_data, load_best_model=False)
    trainer.config["eval_path"] = "standard"
    assert not trainer.packed_eval_enabled(test_data)
    standard = trainer.evaluate(test_data, load_best_model=False)
    assert packed.keys() == standard.keys() and len(packed) == 6 * 3
    for key in packed:
        assert packed[key] == pytest.approx(standard[key], abs=1e-6), key
    assert packed["recall@20"] > 0
