"""Export of packed codes, serving top-k from the file, faiss hand-off; robustness of the flow.

Trains tiny models on the ``toy`` benchmark (50 users x 40 items) once per module; the size
check on ml-100k uses an untrained checkpoint (the size does not depend on training).
Resuming a plugin model from a checkpoint is covered by ``test_hqgnn.py``
(``test_resume_keeps_delta_and_continues``) and ``test_l2qgcn.py``; not repeated here.
"""

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from conftest import FAST_RUN, REPO_ROOT
from helpers import make_toy_benchmark
from recbole_quant import Config
from recbole_quant.__main__ import main
from recbole_quant.errors import (
    CheckpointError,
    ExportError,
    QueryError,
    TrainingDivergedError,
)
from recbole_quant.packed import reference_topk as spec_topk
from recbole_quant.export import ExportedCodes, export_model, load_export, to_faiss
from recbole_quant.packed import PackedPredictor
from recbole_quant.quick_start import load_data, run_recbole_quant
from recbole_quant.checkpoint import load_checkpoint
from recbole_quant.trainer import get_trainer

TOY = dict(FAST_RUN, topk=[10], valid_metric="recall@10")


def toy_config(data_path, **overrides):
    return dict(TOY, data_path=data_path, **overrides)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Checkpoints of a 1-bit d=64 HQGNN, a soft-mode HashGNN and a BPR on ``toy``."""
    root = tmp_path_factory.mktemp("export")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        data_path = make_toy_benchmark(root / "data")
        runs = {
            "hq": ("HQGNN", dict(bits=1, embedding_size=64, epochs=1)),
            "hash": ("HashGNN", dict(mode="soft", code_length=32, embedding_size=16, hidden_size=16,
                                     epochs=1, eval_step=0)),
            "bpr": ("BPR", dict(epochs=1, eval_step=0)),
        }
        out = {"data_path": data_path, "root": root}
        for key, (model, options) in runs.items():
            result = run_recbole_quant(model=model, dataset="toy",
                                       config_dict=toy_config(data_path, **options))
            path = os.path.join(root, f"{key}.pth")
            os.replace(result["checkpoint"], path)  # one-second names could collide
            out[key] = path
        out["hq_export"] = str(root / "hq.npz")
        out["summary"] = export_model(out["hq"], out["hq_export"])
    finally:
        os.chdir(cwd)
    return out


def rebuild(model_name, checkpoint, data_path, **options):
    """A checkpoint rebuilt the way the tests build models (not export's code path)."""
    config = Config(model=model_name, dataset="toy",
                    config_dict=toy_config(data_path, **options), cmd_args=[])
    dataset, train_data, _, test_data = load_data(config)
    model = config.model_class(config, train_data._dataset)
    model.load_state_dict(load_checkpoint(checkpoint)["state_dict"])
    model.eval()
    history = train_data._dataset.inter_matrix(form="csr")
    return dict(model=model, dataset=dataset, test_users=test_data.uid_list.numpy(), history=history)


@pytest.fixture(scope="module")
def hq_reference(toy):
    return rebuild("HQGNN", toy["hq"], toy["data_path"], bits=1, embedding_size=64)


def reference_topk(ref, users, k, exclude_history=True):
    """Top-k (item tokens, scores) from ``full_sort_predict``: padding 0 and history -inf."""
    scores = ref["model"].full_sort_predict(Interaction({"user_id": torch.as_tensor(users)}))
    scores[:, 0] = -float("inf")
    if exclude_history:
        for row, user in enumerate(users):
            scores[row, ref["history"][user].indices] = -float("inf")
    ids = torch.from_numpy(spec_topk(scores.numpy(), k)[1])  # the tie rule's specification
    tokens = ref["dataset"].field2id_token["item_id"]
    return [
        [[str(tokens[i]), float(s)] for i, s in zip(row_ids.tolist(), scores[r, row_ids].tolist())]
        for r, row_ids in enumerate(ids)
    ]


def user_tokens(ref, users):
    return [str(t) for t in ref["dataset"].field2id_token["user_id"][users]]


# ------------------------------------------------------------------ PackedPredictor arrays


def _predictors():
    g = torch.Generator().manual_seed(3)
    yield "sign", PackedPredictor.from_signs(torch.randn(20, 70, generator=g), torch.randn(90, 70, generator=g))
    yield "scaled", PackedPredictor.from_signs(
        torch.randn(20, 3, 70, generator=g), torch.randn(90, 3, 70, generator=g),
        torch.rand(20, 3, generator=g) + 0.1, torch.rand(90, 3, generator=g) + 0.1)
    yield "scaled64", PackedPredictor.from_signs(
        torch.randn(20, 2, 64, generator=g), torch.randn(90, 2, 64, generator=g),
        torch.rand(20, 2, generator=g, dtype=torch.float64), torch.rand(90, 2, generator=g, dtype=torch.float64))
    for bits, item_bits in ((1, 1), (2, 1), (4, 4)):
        yield f"uniform{bits}/{item_bits}", PackedPredictor.from_uniform(
            torch.randint(0, 2**bits, (20, 65), generator=g),
            torch.randint(0, 2**item_bits, (90, 65), generator=g),
            bits, (-0.31, 0.52), (-1.2, 0.9), item_bits=item_bits)
    # built from raw arrays: the affine terms are stored as such
    ku, ki = torch.randint(0, 2, (20, 64), generator=g), torch.randint(0, 2, (90, 64), generator=g)
    from recbole_quant.packed import pack_planes

    yield "affine", PackedPredictor(
        "uniform", pack_planes(ku, 1), pack_planes(ki, 1), 64, 1, 1, 1, None, None, 0.37,
        np.linspace(-1, 1, 90), np.linspace(0, 2, 20))


@pytest.mark.parametrize("name, predictor", list(_predictors()), ids=lambda x: x if isinstance(x, str) else "")
def test_predictor_arrays_round_trip_bit_identical(name, predictor):
    arrays = predictor.to_arrays()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        again = PackedPredictor.from_arrays(npz)
    users = torch.arange(20)
    assert torch.equal(predictor.score(users), again.score(users))
    for exclude in (None, (np.arange(21), np.zeros(20, np.int64))):
        s1, i1 = predictor.topk(users, 7, exclude=exclude)
        s2, i2 = again.topk(users, 7, exclude=exclude)
        assert torch.equal(s1, s2) and torch.equal(i1, i2)
    assert predictor.storage() == again.storage()
    # uniform codes from ranges store 4 floats, not n_users + n_items affine terms
    assert ("user_range" in arrays) == name.startswith("uniform")
    assert ("item_bias" in arrays) == (name == "affine")
    if name.startswith("scaled"):  # float32 scales stay 4 bytes each, float64 ones exact
        assert arrays["user_scales"].dtype == (np.float64 if name == "scaled64" else np.float32)


def test_from_arrays_names_the_inconsistent_array():
    arrays = dict(_predictors())["sign"].to_arrays()
    with pytest.raises(ValueError, match="item_words must be uint64"):
        PackedPredictor.from_arrays(dict(arrays, item_words=arrays["item_words"][:, :1]))
    with pytest.raises(ValueError, match="lack 'shape'"):
        PackedPredictor.from_arrays({k: v for k, v in arrays.items() if k != "shape"})


# ------------------------------------------------------------------ export and serving


def test_export_file_is_plain_arrays_with_digests(toy):
    summary = toy["summary"]
    assert summary.file_bytes == os.path.getsize(toy["hq_export"]) > 0
    assert str(summary).startswith(f"wrote {toy['hq_export']}: {summary.file_bytes:,} bytes on disk")
    with np.load(toy["hq_export"], allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    assert all(a.dtype.kind in "uifU" for a in arrays.values())
    meta = json.loads(str(arrays["meta"]))
    assert meta["format"] == "recbole_quant.export/1"
    assert (meta["model"], meta["dataset"], meta["kind"], meta["dim"], meta["user_bits"]) == (
        "HQGNN", "toy", "uniform", 64, 1)
    assert set(meta["arrays"]) == set(arrays) - {"meta"}
    assert {"codes.user_words", "codes.item_words", "codes.user_range", "user_tokens",
            "item_tokens", "history_indptr", "history_indices"} <= set(arrays)
    assert arrays["user_tokens"][0] == "[PAD]" and len(arrays["item_tokens"]) == 41


def test_fresh_process_top10_equals_model_for_every_test_user(toy, hq_reference, tmp_path):
    users = hq_reference["test_users"]
    assert len(users) == 50
    expected = reference_topk(hq_reference, users, 10)
    tokens = user_tokens(hq_reference, users)
    (tmp_path / "users.json").write_text(json.dumps(tokens))
    script = (
        "import json, sys\n"
        "from recbole_quant.export import load_export\n"
        "codes = load_export(sys.argv[1])\n"
        "recs = codes.recommend(json.load(open(sys.argv[2])), k=10)\n"
        "loaded = sorted(m for m in sys.modules if m == 'recbole' or m.startswith('recbole.'))\n"
        "print(json.dumps({'recs': recs, 'recbole_modules': loaded}))\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    done = subprocess.run([sys.executable, "-c", script, toy["hq_export"], str(tmp_path / "users.json")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["recbole_modules"] == []  # serving needs no RecBole, no model code
    assert answer["recs"] == expected  # same items, same order, bit-identical scores


def test_keep_seen_and_history_all(toy, hq_reference, tmp_path):
    codes = load_export(toy["hq_export"])
    users = hq_reference["test_users"][:5]
    tokens = user_tokens(hq_reference, users)
    kept = codes.recommend(tokens, k=10, exclude_seen=False)
    assert [[list(p) for p in row] for row in kept] == reference_topk(hq_reference, users, 10, False)
    # history=all also skips the valid and test items
    summary = export_model(toy["hq"], str(tmp_path / "all.npz"), history="all")
    everything = load_export(summary.path)
    seen_train, seen_all = set(codes.seen_items(tokens[0])), set(everything.seen_items(tokens[0]))
    assert seen_train < seen_all and len(seen_all) == 10  # make_toy_benchmark: 10 per user
    recs = everything.recommend(tokens[0], k=30)[0]
    assert len(recs) == 30 and not {item for item, _ in recs} & seen_all
    # history=none: only the padding item is skipped
    none = load_export(export_model(toy["hq"], str(tmp_path / "none.bin"), history="none").path)
    assert none.seen_items(tokens[0]) == [] and len(none.recommend(tokens[0], k=40)[0]) == 40
    assert os.path.isfile(tmp_path / "none.bin")  # written as named, no ".npz" appended


def test_scaled_multi_layer_l2qgcn_export_equals_model(toy, tmp_path):
    options = dict(embedding_size=16, epochs=1, eval_step=0)
    result = run_recbole_quant(model="L2QGCN", dataset="toy",
                               config_dict=toy_config(toy["data_path"], **options))
    codes = load_export(export_model(result["checkpoint"], str(tmp_path / "l2q.npz")).path)
    assert (codes.predictor.kind, codes.predictor.groups) == ("sign", 3)  # layers 0..2, scaled
    ref = rebuild("L2QGCN", result["checkpoint"], toy["data_path"], **options)
    users = ref["test_users"][:10]
    recs = codes.recommend(user_tokens(ref, users), k=10)
    assert [[list(p) for p in row] for row in recs] == reference_topk(ref, users, 10)


def test_short_lists_when_fewer_items_remain(toy):
    codes = load_export(toy["hq_export"])
    recs = codes.recommend(["1"], k=40)[0]
    assert len(recs) == 40 - len(codes.seen_items("1"))


def test_ml100k_1bit_d64_export_is_under_a_twentieth_of_float32(tmp_path):
    # an untrained checkpoint: the export's size does not depend on training
    config = Config(model="HQGNN", dataset="ml-100k",
                    config_dict=dict(FAST_RUN, bits=1, embedding_size=64), cmd_args=[])
    _, train_data, _, _ = load_data(config)
    model = config.model_class(config, train_data._dataset)
    model.train()
    model.calculate_loss(next(iter(train_data)))  # initialises the quantizer ranges
    trainer = get_trainer(config, config.model_class)(config, model)
    checkpoint = str(tmp_path / "ml.pth")
    trainer._save_checkpoint(0, verbose=False, saved_model_file=checkpoint)
    summary = export_model(checkpoint, str(tmp_path / "ml.npz"), history="none")
    float32_tables = (944 + 1683) * 64 * 4
    assert summary.float32_bytes == float32_tables
    assert summary.file_bytes * 20 < float32_tables
    assert summary.code_bytes * 20 < float32_tables
    assert load_export(summary.path).n_items == 1682


# ------------------------------------------------------------------ faiss


def _exported(predictor):
    """An ExportedCodes around a predictor (synthetic codes, no training)."""
    arrays = {"codes." + k: v for k, v in predictor.to_arrays().items()}
    arrays["user_tokens"] = np.array(["[PAD]"] + [f"u{i}" for i in range(1, predictor.n_users)])
    arrays["item_tokens"] = np.array(["[PAD]"] + [f"i{i}" for i in range(1, predictor.n_items)])
    return ExportedCodes(arrays, {"model": "synthetic", "dataset": "synthetic", "history": "none"}, "mem")


def assert_same_ranking(exported, index, users, k):
    """faiss Hamming top-k == PackedPredictor.topk: same score per rank, ids up to ties."""
    distances, ids = index.search(exported.faiss_queries(users), k)
    scores = exported.hamming_to_score(distances)
    uid = exported.user_ids(users)
    pad_only = (np.arange(len(uid) + 1), np.zeros(len(uid), np.int64))
    ref_scores, ref_ids = (t.numpy() for t in exported.predictor.topk(uid, k, exclude=pad_only))
    full = exported.predictor.score(uid).numpy()
    assert np.array_equal(scores, ref_scores)
    for row in range(len(uid)):
        assert (ids[row] > 0).all()  # the padding item is not in the index
        assert np.array_equal(full[row, ids[row]], scores[row])  # each id has its score
        above = scores[row] > scores[row, -1]  # ids above the k-th score are tie-free
        assert set(ids[row][above]) == set(ref_ids[row][above])


def test_faiss_codes_match_packed_scores_multi_group_with_tail_bits():
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(5)
    predictor = PackedPredictor.from_signs(torch.randn(12, 3, 70, generator=g),
                                           torch.randn(300, 3, 70, generator=g))
    exported = _exported(predictor)
    users = [f"u{i}" for i in range(1, 12)]
    assert exported.faiss_queries(users).shape == (11, 3 * 9)  # 70 bits -> 9 bytes per group
    assert_same_ranking(exported, to_faiss(exported), users, 20)


def test_faiss_flat_and_ivf_equal_packed_topk_of_hashgnn(toy, tmp_path):
    pytest.importorskip("faiss")
    with pytest.raises(ExportError, match="export needs packed codes.*--mode=hard"):
        export_model(toy["hash"], str(tmp_path / "soft.npz"))
    summary = export_model(toy["hash"], str(tmp_path / "hard.npz"), overrides=["--mode=hard"])
    exported = load_export(summary.path)
    users = [str(t) for t in exported.user_tokens[1:]]
    assert_same_ranking(exported, to_faiss(exported), users, 10)
    assert_same_ranking(exported, to_faiss(exported, ivf_nlist=4, nprobe=4), users, 10)
    # recommend() ranks the same codes (exact, with the tie rule)
    best = exported.recommend(users[0], k=1, exclude_seen=False)[0][0]
    distances, ids = to_faiss(exported).search(exported.faiss_queries(users[:1]), 1)
    assert best[1] == exported.hamming_to_score(distances)[0, 0]


def test_faiss_refuses_inexact_codes_and_reports_missing_faiss(toy, monkeypatch):
    codes = load_export(toy["hq_export"])
    with pytest.raises(ExportError, match="exact only for unscaled sign codes.*uniform 1-bit"):
        to_faiss(codes)
    g = torch.Generator().manual_seed(1)
    scaled = _exported(PackedPredictor.from_signs(torch.randn(4, 2, 8, generator=g), torch.randn(9, 2, 8, generator=g),
                                                  torch.rand(4, 2, generator=g), torch.rand(9, 2, generator=g)))
    with pytest.raises(ExportError, match="per-node scales"):
        to_faiss(scaled)
    plain = _exported(PackedPredictor.from_signs(torch.randn(4, 8, generator=g), torch.randn(9, 8, generator=g)))
    with pytest.raises(ExportError, match="ivf_nlist=9 is not valid: an integer in 1..8"):
        to_faiss(plain, ivf_nlist=9)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(ExportError, match=r"pip install 'recbole-quant\[faiss\]'"):
        to_faiss(plain)


# ------------------------------------------------------------------ bad inputs


def test_unknown_user_and_impossible_k(toy):
    codes = load_export(toy["hq_export"])
    with pytest.raises(QueryError, match=r"Unknown user '9999'.*50 users.*recbole_quant info .* --users"):
        codes.recommend(["1", "9999"])
    with pytest.raises(QueryError, match="Unknown user '\\[PAD\\]'"):
        codes.recommend("[PAD]")
    for k in (0, -3, 2.5, True):
        with pytest.raises(QueryError, match="is not valid: a positive integer"):
            codes.recommend("1", k=k)
    with pytest.raises(QueryError, match="k=41 is larger than the 40 items of toy: use k <= 40"):
        codes.recommend("1", k=41)
    assert codes.recommend([], k=5) == []


def _rewrite(path, out, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    change(arrays)
    with open(out, "wb") as f:
        np.savez(f, **arrays)


def test_missing_truncated_tampered_and_foreign_files(toy, tmp_path):
    with pytest.raises(ExportError, match="Export file not found: .*nothing.npz"):
        load_export(tmp_path / "nothing.npz")
    data = open(toy["hq_export"], "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match="truncated, damaged or not a recbole_quant export"):
        load_export(tmp_path / "cut.npz")

    def flip_bit(arrays):
        arrays["codes.item_words"] = arrays["codes.item_words"].copy()
        arrays["codes.item_words"][3, 0] ^= np.uint64(1)

    _rewrite(toy["hq_export"], tmp_path / "flip.npz", flip_bit)
    with pytest.raises(ExportError, match="'codes.item_words' does not match its SHA-256 digest.*tampered"):
        load_export(tmp_path / "flip.npz")
    _rewrite(toy["hq_export"], tmp_path / "extra.npz", lambda a: a.update(extra=np.zeros(1)))
    with pytest.raises(ExportError, match=r"modified after export.*unexpected \['extra'\]"):
        load_export(tmp_path / "extra.npz")
    _rewrite(toy["hq_export"], tmp_path / "drop.npz", lambda a: a.pop("history_indices"))
    with pytest.raises(ExportError, match=r"missing \['history_indices'\]"):
        load_export(tmp_path / "drop.npz")
    with pytest.raises(ExportError, match="not a recbole_quant export .*A checkpoint\\? Export it first"):
        load_export(toy["hq"])  # a checkpoint is a zip file too


def test_bad_checkpoints_are_clear_errors(toy, tmp_path):
    out = str(tmp_path / "x.npz")
    with pytest.raises(CheckpointError, match="Checkpoint not found"):
        export_model(tmp_path / "missing.pth", out)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="damaged or not a recbole_quant checkpoint"):
        export_model(tmp_path / "junk.pth", out)
    with pytest.raises(CheckpointError, match="holds a HQGNN model, not HashGNN"):
        export_model(toy["hq"], out, expected_model="HashGNN")
    with pytest.raises(ExportError, match="BPR is not a quantized model: export needs packed codes"):
        export_model(toy["bpr"], out)
    with pytest.raises(ExportError, match="history='seen' is not valid"):
        export_model(toy["hq"], out, history="seen")
    assert not os.path.exists(out)


# ------------------------------------------------------------------ command line


def test_cli_export_recommend_info(toy, tmp_path, capsys):
    out = str(tmp_path / "cli.npz")
    assert main(["export", toy["hq"], out]) == 0
    printed = capsys.readouterr().out
    size = os.path.getsize(out)
    assert f"wrote {out}: {size:,} bytes on disk" in printed
    assert "float32 tables (51 + 41) x 64 x 4 = 23,552 bytes" in printed
    assert main(["recommend", out, "--user", "1", "--k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = load_export(out).recommend("1", k=3)[0]
    assert lines[0] == "user 1: top-3 of 40 items, seen items excluded (train history)"
    assert [line.split()[1] for line in lines[2:]] == [item for item, _ in expected]
    assert [np.float32(line.split()[2]) for line in lines[2:]] == [np.float32(s) for _, s in expected]
    assert main(["info", out, "--users"]) == 0
    assert capsys.readouterr().out.split() == [str(u) for u in range(1, 51)]


@pytest.mark.parametrize("argv, message", [
    (["recommend", "{export}", "--user", "777"], "Unknown user '777'"),
    (["recommend", "{export}", "--user", "1", "--k", "0"], "k=0 is not valid"),
    (["recommend", "{export}", "--user", "1", "--k", "41"], "the 40 items of toy"),
    (["recommend", "{tmp}/none.npz", "--user", "1"], "Export file not found"),
    (["export", "{hash}", "{tmp}/x.npz"], "--mode=hard"),
    (["export", "{hq}", "{tmp}/x.npz", "--model=HashGNN"], "holds a HQGNN model, not HashGNN"),
    (["export", "{hq}", "{tmp}/x.npz", "--bitz=2"], "Unknown option --bitz"),
])
def test_cli_errors_are_one_line_exit_2(toy, tmp_path, capsys, argv, message):
    fill = dict(export=toy["hq_export"], tmp=tmp_path, hash=toy["hash"], hq=toy["hq"])
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


# ------------------------------------------------------------------ robustness of training


def test_same_seed_gives_identical_metrics(toy):
    options = toy_config(toy["data_path"], bits=2, embedding_size=16, epochs=2)
    first = run_recbole_quant(model="HQGNN", dataset="toy", config_dict=options, saved=False)
    second = run_recbole_quant(model="HQGNN", dataset="toy", config_dict=options, saved=False)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]


def test_nan_loss_stops_with_epoch_and_keeps_best_checkpoint(toy, monkeypatch):
    from recbole_quant.model.general_recommender.hqgnn import HQGNN

    original, calls = HQGNN.calculate_loss, []

    def nan_from_second_batch(self, interaction):
        calls.append(1)  # toy: one training batch per epoch, so epoch 1 diverges
        loss = original(self, interaction)
        return loss * float("nan") if len(calls) > 1 else loss

    monkeypatch.setattr(HQGNN, "calculate_loss", nan_from_second_batch)
    with pytest.raises(TrainingDivergedError, match="Training loss became nan at epoch 1") as info:
        run_recbole_quant(model="HQGNN", dataset="toy",
                          config_dict=toy_config(toy["data_path"], bits=1, epochs=3))
    kept = re.search(r"kept at (\S+\.pth)", str(info.value)).group(1)
    assert load_checkpoint(kept, expected_model="HQGNN")["epoch"] == 0
