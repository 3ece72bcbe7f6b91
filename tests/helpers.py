"""Small data builders shared by the tests."""

import os


def write_inter(path, rows, header="user_id:token\titem_id:token"):
    """Write a RecBole atomic .inter file from (user, item) rows."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + "\n")
        for u, i in rows:
            f.write(f"{u}\t{i}\n")


def make_lightgcn_split(folder, n_users=60, n_items=40, per_user=8, seed=0):
    """A tiny LightGCN-format split (train.txt/test.txt) with a user with no test items."""
    import numpy as np

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train.txt"), "w") as tr, open(
        os.path.join(folder, "test.txt"), "w"
    ) as te:
        for u in range(n_users):
            items = rng.choice(n_items, size=per_user + 2, replace=False)
            tr.write(" ".join(map(str, [u, *items[:per_user]])) + "\n")
            test_items = [] if u == 3 else list(items[per_user:])
            te.write(" ".join(map(str, [u, *test_items])) + "\n")
    return folder


def make_toy_benchmark(root, name="toy", n_users=50, n_items=40, per_user=10, seed=0):
    """A tiny fixed-split RecBole dataset (train/valid/test .inter) under ``root/name``.

    Returns the ``data_path`` to pass with ``dataset=name``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    parts = {"train": [], "valid": [], "test": []}
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(1, n_items + 1), size=per_user, replace=False)
        parts["train"] += [(u, i) for i in items[:-4]]
        parts["valid"] += [(u, i) for i in items[-4:-2]]
        parts["test"] += [(u, i) for i in items[-2:]]
    for part, rows in parts.items():
        write_inter(os.path.join(str(root), name, f"{name}.{part}.inter"), rows)
    return str(root)


def train_toy_lightgcn(root, config_dict):
    """A toy benchmark ("toy", plus "other" of another seed) under ``root`` and a LightGCN
    trained on "toy" in ``root``; returns (data_path, checkpoint path)."""
    from recbole_quant.quick_start import run_recbole_quant

    data_path = make_toy_benchmark(root)
    make_toy_benchmark(root, name="other", seed=1)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = run_recbole_quant(model="LightGCN", dataset="toy",
                                   config_dict=dict(config_dict, data_path=data_path))
    finally:
        os.chdir(cwd)
    return data_path, os.path.join(root, result["checkpoint"])


def toy_config(data_path, **extra):
    """FAST_RUN on a toy benchmark under ``data_path``, ranked by Recall@5 (the toys are small)."""
    from conftest import FAST_RUN

    return dict(FAST_RUN, data_path=data_path, topk=[5], valid_metric="Recall@5", **extra)


def build_toy_model(data_path, model, dataset="toy", **options):
    """Config, an untrained ``model`` and the training data of a toy benchmark: (config, model,
    train_data)."""
    from recbole_quant import Config
    from recbole_quant.quick_start import load_data

    config = Config(model=model, dataset=dataset, config_dict=toy_config(data_path, **options),
                    cmd_args=[])
    _, train_data, _, _ = load_data(config)
    return config, config.model_class(config, train_data._dataset), train_data
