"""Distillation from a full-precision teacher (teacher_checkpoint, distill_weight)."""


import pytest
import torch

from conftest import FAST_RUN
from helpers import build_toy_model, toy_config, train_toy_lightgcn
from recbole_quant import Config
from recbole_quant.checkpoint import load_checkpoint
from recbole_quant.errors import CheckpointError, ConfigValueError
from recbole_quant.model import distillation
from recbole_quant.model.distillation import listwise_distillation
from recbole_quant.quick_start import run_recbole_quant

MODELS = [
    ("HQGNN", {"embedding_size": 16}),
    ("L2QGCN", {"embedding_size": 16, "variant": "anl", "warmup_epochs": 0}),
    ("HashGNN", {"embedding_size": 16, "encoder": "lightgcn", "code_length": 16}),
    ("HashGNN", {"embedding_size": 16}),
]


# -- the loss ----------------------------------------------------------------------------------
def test_gradient_pushes_up_what_the_teacher_ranks_higher():
    # one user, three items: the teacher prefers item 0, the student item 2
    teacher = torch.tensor([[3.0, 1.0, 0.0]], dtype=torch.float64)
    student = torch.tensor([[0.0, 1.0, 3.0]], dtype=torch.float64, requires_grad=True)
    loss = listwise_distillation(student, teacher, temperature=2.0)
    loss.backward()
    grad = student.grad[0]
    assert loss > 0
    assert grad[0] < 0 < grad[2]  # descent raises item 0 and lowers item 2
    # the closed form: dL/ds = (T / U) * (softmax(s/T) - softmax(t/T))
    expected = 2.0 * (torch.softmax(student.detach() / 2, -1) - torch.softmax(teacher / 2, -1))
    torch.testing.assert_close(student.grad, expected)
    assert abs(float(grad.sum())) < 1e-12  # a shift of all scores changes nothing
    # agreement up to a shift: zero loss and zero gradient
    same = (teacher + 5.0).requires_grad_(True)
    zero = listwise_distillation(same, teacher, temperature=2.0)
    zero.backward()
    assert float(zero) == pytest.approx(0.0, abs=1e-12)
    assert same.grad.abs().max() < 1e-12


def test_gradient_matches_gradcheck():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(4, 7, dtype=torch.float64, generator=generator, requires_grad=True)
    teacher = torch.randn(4, 7, dtype=torch.float64, generator=generator)
    for temperature in (0.5, 1.0, 3.0):
        assert torch.autograd.gradcheck(
            lambda s: listwise_distillation(s, teacher, temperature), (student,)
        )
        assert torch.autograd.gradgradcheck(
            lambda s: listwise_distillation(s, teacher, temperature), (student,)
        )


# -- options -----------------------------------------------------------------------------------
def _options(**values):
    base = {"distill_weight": 0, "distill_temperature": 1.0, "teacher_checkpoint": None,
            "distill_max_users": 1024, "distill_max_items": 4096}
    base.update(values)
    return base


@pytest.mark.parametrize(
    "values, message",
    [
        ({"distill_weight": -0.1}, r"distill_weight=-0.1 is not valid: a finite number >= 0"),
        ({"distill_temperature": 0}, r"distill_temperature=0 is not valid: a finite number > 0"),
        ({"distill_weight": 0.5}, r"distill_weight=0.5 needs a teacher: set teacher_checkpoint"),
        ({"teacher_checkpoint": 3}, r"teacher_checkpoint=3 is not valid"),
        ({"distill_max_users": 0}, r"distill_max_users=0 is not valid: an integer in >= 1"),
        ({"distill_max_items": 2.5}, r"distill_max_items=2.5 is not valid"),
    ],
)
def test_bad_options_are_refused(values, message):
    with pytest.raises(ConfigValueError, match=message):
        distillation.read_options(_options(**values))
    assert distillation.read_options(_options(distill_weight=1, teacher_checkpoint="t.pth")) == {
        "distill_weight": 1.0, "distill_temperature": 1.0, "teacher_checkpoint": "t.pth",
        "distill_max_users": 1024, "distill_max_items": 4096,
    }


def test_distinct_rows_caps_the_count_with_a_uniform_subset_and_draws_nothing_below_it():
    ids = torch.tensor([7, 3, 7, 9, 3, 1, 12, 9])
    state = torch.get_rng_state()
    unique, row = distillation.distinct_rows(ids, limit=5)
    assert torch.equal(torch.get_rng_state(), state)  # under the cap: no draw, same stream
    assert unique.tolist() == [1, 3, 7, 9, 12] and torch.equal(ids[row], unique)
    assert row.tolist() == [5, 1, 0, 3, 6]  # the first row holding each id
    torch.manual_seed(0)
    seen = torch.zeros(13)
    for _ in range(400):
        unique, row = distillation.distinct_rows(ids, limit=2)
        assert unique.numel() == 2 and bool((unique[1:] > unique[:-1]).all())
        assert torch.equal(ids[row], unique)
        seen[unique] += 1
    # each of the 5 distinct ids is kept with probability 2/5: 160 of 400 expected
    assert seen[[1, 3, 7, 9, 12]].min() > 110 and seen[[1, 3, 7, 9, 12]].max() < 210
    assert seen.sum() == 800


# -- models ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    return train_toy_lightgcn(root, toy_config(root, embedding_size=32))


def _loss(model, batch, seed=7):
    torch.manual_seed(seed)  # HashGNN samples neighbours and guided-STE draws
    model.train()
    return model.calculate_loss(batch)


@pytest.mark.parametrize("model, options", MODELS)
def test_zero_weight_reads_no_teacher_and_keeps_the_loss(teacher, model, options, monkeypatch):
    data_path, _ = teacher
    torch.manual_seed(0)
    _, plain, train_data = build_toy_model(data_path, model, **options)
    batch = next(iter(train_data))
    monkeypatch.setattr(distillation, "Teacher", lambda *a, **k: pytest.fail("teacher read"))
    torch.manual_seed(0)
    _, off, _ = build_toy_model(
        data_path, model, distill_weight=0, teacher_checkpoint="missing.pth", **options
    )
    assert off.teacher is None and plain.teacher is None
    assert set(off.state_dict()) == set(plain.state_dict())
    expected = _loss(plain, batch)
    got = _loss(off, batch)
    assert torch.is_tensor(got) and got.dim() == 0
    assert torch.equal(got, expected)


@pytest.mark.parametrize("model, options", MODELS)
def test_distillation_adds_a_logged_term_with_gradients(teacher, model, options):
    data_path, path = teacher
    _, student, train_data = build_toy_model(
        data_path, model, teacher_checkpoint=path, distill_weight=0.5, distill_temperature=2.0,
        **options,
    )
    # the teacher is frozen and never part of the student's checkpoint
    assert not any(name.startswith("teacher") for name in student.state_dict())
    assert not any(name.startswith("teacher") for name, _ in student.named_parameters())
    own, distill = _loss(student, next(iter(train_data)))
    assert own.dim() == 0 and float(distill) > 0
    student.zero_grad()
    distill.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert student.teacher.user_final.grad is None


@pytest.mark.parametrize("model, options", MODELS)
def test_distillation_compares_at_most_the_capped_users_and_items(teacher, model, options, monkeypatch):
    data_path, path = teacher
    _, student, train_data = build_toy_model(
        data_path, model, teacher_checkpoint=path, distill_weight=1.0, distill_max_users=3,
        distill_max_items=5, **options,
    )
    shapes = []
    real_loss = student.teacher.loss
    monkeypatch.setattr(
        student.teacher, "loss", lambda u, i, s: shapes.append((len(u), len(i), tuple(s.shape)))
        or real_loss(u, i, s),
    )
    own, distill = _loss(student, next(iter(train_data)))
    assert shapes == [(3, 5, (3, 5))] and float(distill) > 0


def test_teacher_embeddings_are_lightgcn_final_embeddings(teacher):
    data_path, path = teacher
    _, student, train_data = build_toy_model(
        data_path, "HQGNN", teacher_checkpoint=path, distill_weight=1.0, embedding_size=16
    )
    config = Config(model="LightGCN", dataset="toy",
                    config_dict=toy_config(data_path, embedding_size=32), cmd_args=[])
    lightgcn = config.model_class(config, train_data._dataset)
    lightgcn.load_state_dict(load_checkpoint(path)["state_dict"])
    with torch.no_grad():
        users, items = lightgcn.forward()
    torch.testing.assert_close(student.teacher.user_final, users, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(student.teacher.item_final, items, atol=1e-6, rtol=1e-5)
    u, i = torch.tensor([1, 2]), torch.tensor([3, 4, 5])
    torch.testing.assert_close(student.teacher.scores(u, i), users[u] @ items[i].T)


def test_teacher_of_another_dataset_or_model_is_refused(teacher, tmp_path):
    data_path, path = teacher
    with pytest.raises(CheckpointError, match=r"teacher_checkpoint=.* trained on dataset "
                       r"'toy', not 'other'.*Train the teacher model on 'other' first"):
        build_toy_model(data_path, "HQGNN", dataset="other", teacher_checkpoint=path, distill_weight=1.0,
               embedding_size=16)
    with pytest.raises(CheckpointError, match="not found"):
        build_toy_model(data_path, "L2QGCN", teacher_checkpoint=str(tmp_path / "none.pth"),
               distill_weight=1.0, embedding_size=16)
    # a checkpoint whose tables do not have this dataset's rows
    state = load_checkpoint(path)
    state["state_dict"]["user_embedding.weight"] = state["state_dict"]["user_embedding.weight"][:-3]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match=r"has shape \(48, 32\), but dataset 'toy' has 51 users"):
        build_toy_model(data_path, "HQGNN", teacher_checkpoint=str(tmp_path / "short.pth"),
               distill_weight=1.0, embedding_size=16)


def test_distilled_model_trains_and_exports_without_its_teacher(teacher, tmp_path):
    from recbole_quant.export import export_model, load_export

    data_path, path = teacher
    copy = tmp_path / "teacher.pth"
    copy.write_bytes(open(path, "rb").read())
    result = run_recbole_quant(
        model="L2QGCN", dataset="toy",
        config_dict=toy_config(data_path, embedding_size=16, variant="anl", warmup_epochs=1,
                            teacher_checkpoint=str(copy), distill_weight=1.0),
    )
    assert 0 <= result["test_result"]["recall@5"] <= 1
    copy.unlink()  # the teacher is a training input only
    export_model(result["checkpoint"], tmp_path / "codes.npz")
    exported = load_export(tmp_path / "codes.npz")
    assert exported.predictor.n_users == result["n_users"]


# -- end to end on ml-100k ---------------------------------------------------------------------
def test_hqgnn_distills_from_a_lightgcn_on_ml100k():
    run = dict(FAST_RUN, epochs=1, state="INFO")
    lightgcn = run_recbole_quant(model="LightGCN", dataset="ml-100k", config_dict=run)
    result = run_recbole_quant(
        model="HQGNN",
        dataset="ml-100k",
        config_dict=dict(run, bits=1, teacher_checkpoint=lightgcn["checkpoint"],
                         distill_weight=0.5),
    )
    assert 0 < result["test_result"]["recall@10"] <= 1 and result["epochs"] == 1
    log = open(result["log_file"], encoding="utf-8").read()
    assert "distillation from the LightGCN checkpoint" in log
    assert "train_loss2" in log  # the weighted distillation term of the epoch
