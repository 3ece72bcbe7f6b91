"""Training with several processes (torch.distributed), RecBole-style and exact.

Options are RecBole's: ``nproc`` (processes on this machine), ``world_size`` (processes in
all, default ``nproc``), ``ip`` / ``port`` (the rendezvous of rank 0) and ``offset`` (the
global rank of this machine's first process). ``--nproc=2`` on one machine; on two::

    # machine A (192.168.0.10)                 # machine B
    --nproc=2 --world_size=4 --ip=192.168.0.10 --nproc=2 --world_size=4 --ip=192.168.0.10
    --port=29500 --offset=0                    --port=29500 --offset=2

What is RecBole's and what is changed, and why:

* RecBole's DDP machinery is used as it is: the trainer wraps the model in
  ``DistributedDataParallel`` (gradients all-reduced every batch, buffers broadcast from
  rank 0), only rank 0 logs and writes checkpoints, and metrics of RecBole's standard
  evaluation are reduced across ranks.
* On CPU RecBole cannot start: it always asks for ``nccl`` and passes ``device_ids`` to DDP.
  Here the backend is ``gloo`` on CPU (``nccl`` on GPU) and CPU models get no ``device_ids``.
* **The split is exact.** RecBole hands each rank a different ``DistributedSampler`` share
  with its own negative samples, so a 2-process run trains on other batches than a
  1-process run. Here every rank builds the same full loaders from the same seed, draws
  the same global batch (same shuffle, same negatives) and trains on its contiguous slice;
  each slice's loss is weighted by its share of the batch, so the averaged gradient is the
  gradient of the global batch, and the run follows the single-process run up to float
  summation order. Per-epoch hooks (HQ-GNN's Hessian delta, HashGNN's beta, L2Q-GCN's
  stage switch) see the same data and epoch on every rank, and DDP broadcasts rank 0's
  buffers every batch.
* Every rank evaluates every user (the packed evaluation is cheap), so early stopping and
  model selection agree on all ranks without extra messages.
* Results reach the launching process as JSON text, and the checkpoint name rank 0
  reserved reaches the other ranks as bytes in a tensor: no Python object is unpickled.

Speed: the full-graph propagation of a graph recommender is not split (each rank needs
every node's embedding), so on one machine more processes mostly share the cores the
propagation already used; ``benchmarks/bench_ddp.py`` measures it.
"""

import contextlib
import dataclasses
import json
import os
import socket

import torch
import torch.distributed as dist

from recbole_quant.errors import ConfigValueError

DISTRIBUTED_KEYS = ("nproc", "world_size", "ip", "port", "offset")


def is_distributed(config):
    """True inside one process of a multi-process run."""
    return not config["single_spec"]


def is_worker(config):
    """True in a process started by :func:`launch` (its config carries ``local_rank``)."""
    return "local_rank" in (config.variable_config_dict or {})


def world_size(config):
    return config["world_size"] if is_distributed(config) else 1


def count_ranks(config):
    """How many ranks reached this point (an all-reduce of ones): proof they all ran."""
    if not is_distributed(config):
        return 1
    ones = torch.ones(1)
    dist.all_reduce(ones)
    return int(ones.item())


def quiet_logger():
    """Ranks other than 0 log nothing but errors, and write no log file (as RecBole)."""
    import logging

    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setLevel(logging.ERROR)
    root.addHandler(handler)
    root.setLevel(logging.ERROR)


def is_rank_zero(config):
    return config["single_spec"] or config["local_rank"] + config["offset"] == 0


def launch_settings(config_dict):
    """``(nproc, world_size, ip, port, offset)`` from a config, checked, or None for one process."""
    if not isinstance(config_dict, dict):  # a Config: RecBole's defaults lack these keys
        config_dict = {k: config_dict[k] for k in DISTRIBUTED_KEYS if config_dict[k] is not None}
    nproc = _int(config_dict.get("nproc", 1), "nproc", low=1)
    world_size = _int(config_dict.get("world_size", -1), "world_size", low=-1)
    if nproc == 1 and world_size <= 0:
        return None
    if world_size == -1:
        world_size = nproc
    offset = _int(config_dict.get("offset", 0), "offset", low=0)
    if offset + nproc > world_size:
        raise ConfigValueError(
            f"nproc={nproc} with offset={offset} needs world_size >= {offset + nproc}, "
            f"got world_size={world_size}."
        )
    ip = str(config_dict.get("ip", "localhost"))
    port = _int(config_dict.get("port", 5678), "port", low=1)
    return nproc, world_size, ip, port, offset


def _int(value, key, low):
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigValueError(f"{key}={value!r} is not valid: an integer >= {low}.")
    return value


def free_port():
    """A TCP port free on this machine now (for tests and single-machine runs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- launching
def launch(run_kwargs, settings, config):
    """Run ``run_recbole_quant(**run_kwargs)`` in ``nproc`` processes; rank 0's result.

    The result comes back from rank 0 as JSON text (metrics, timings, paths, storage); the
    launching process adds its own ``config`` (the workers' differs only in rank and device)
    and rebuilds the storage report. ``None`` on a machine that holds no rank 0.
    """
    import torch.multiprocessing as mp

    nproc, world_size, ip, port, offset = settings
    config_dict = dict(run_kwargs.get("config_dict") or {})
    config_dict.update(nproc=nproc, world_size=world_size, ip=ip, port=port, offset=offset)
    run_kwargs = dict(run_kwargs, config_dict=config_dict)
    # RecBole's ensure_dir checks, then creates: ranks starting together would race on it
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_worker, args=(run_kwargs, queue), nprocs=nproc, join=True)
    if queue.empty():
        return None  # this machine holds no rank 0 (offset > 0)
    result = json.loads(queue.get())
    if result.get("storage") is not None:
        from recbole_quant.packed import StorageReport

        result["storage"] = StorageReport(**result["storage"])
    result["config"] = config
    return result


def _worker(local_rank, run_kwargs, queue):
    from recbole_quant.quick_start import run_recbole_quant

    config_dict = dict(run_kwargs["config_dict"], local_rank=local_rank)
    result = run_recbole_quant(**dict(run_kwargs, config_dict=config_dict))
    if result is not None and local_rank + config_dict["offset"] == 0:
        queue.put(json.dumps(plain_result(result)))


def plain_result(result):
    """The JSON-able part of ``run_recbole_quant``'s result."""
    out = {}
    for key, value in result.items():
        if key == "config":
            continue
        if key == "storage" and dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        try:
            json.dumps(value)
        except TypeError:
            value = str(value)
        out[key] = value
    return out


# ------------------------------------------------------------------------- in a worker
def init_process_group(final_config_dict):
    """RecBole's ``Config._init_device`` for a worker, with gloo on CPU.

    Sets ``device``, ``single_spec`` and quiets every rank but 0, as RecBole does.
    """
    cfg = final_config_dict
    use_cuda = bool(cfg.get("use_gpu", True)) and torch.cuda.is_available() and cfg.get("gpu_id", "") != ""
    rank = cfg["local_rank"] + cfg["offset"]
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            rank=rank,
            world_size=cfg["world_size"],
            init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
        )
    if use_cuda:
        torch.cuda.set_device(cfg["local_rank"])
        cfg["device"] = torch.device("cuda", cfg["local_rank"])
    else:
        cfg["device"] = torch.device("cpu")
    cfg["single_spec"] = False
    if rank != 0:
        cfg["state"] = "error"
        cfg["show_progress"] = False
        cfg["verbose"] = False
    _patch_recbole_ddp()


def _patch_recbole_ddp():
    # RecBole builds DistributedDataParallel(model, device_ids=[local_rank]); a CPU module
    # must get device_ids=None. Patched only once a distributed run has started.
    import recbole.trainer.trainer as recbole_trainer
    from torch.nn.parallel import DistributedDataParallel

    if getattr(recbole_trainer.DistributedDataParallel, "_recbole_quant", False):
        return

    def ddp(module, device_ids=None, **kwargs):
        if next(module.parameters()).device.type == "cpu":
            device_ids = None
        return DistributedDataParallel(module, device_ids=device_ids, **kwargs)

    ddp._recbole_quant = True
    recbole_trainer.DistributedDataParallel = ddp


@contextlib.contextmanager
def full_loaders(config):
    """Build RecBole's loaders as one process would (no DistributedSampler share)."""
    if not is_distributed(config):
        yield
        return
    config.final_config_dict["single_spec"] = True
    try:
        yield
    finally:
        config.final_config_dict["single_spec"] = False


def broadcast_text(text, config):
    """Rank 0's ``text`` on every rank (bytes in a tensor: nothing is unpickled)."""
    if not is_distributed(config):
        return text
    data = torch.tensor(list(text.encode("utf-8")) if text is not None else [], dtype=torch.uint8)
    length = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(length, src=0)
    if len(data) != length.item():
        data = torch.zeros(length.item(), dtype=torch.uint8)
    dist.broadcast(data, src=0)
    return bytes(data.tolist()).decode("utf-8")


def barrier(config):
    if is_distributed(config):
        dist.barrier()


def shutdown(config):
    if is_distributed(config) and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class SlicedBatchMixin:
    """Trainer mixin: each rank trains on its slice of the same global batch.

    With ``W`` ranks and a global batch of ``N`` rows, rank ``r`` takes rows
    ``[r N / W, (r + 1) N / W)`` and weights its loss by ``W n_r / N``; DDP's gradient average
    is then the global batch's gradient (see the module docstring).
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        if is_distributed(config):
            self._world = config["world_size"]
            self._rank = config["local_rank"] + config["offset"]

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if not is_distributed(self.config):
            return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        if not hasattr(train_data.sampler, "set_epoch"):
            # the full loader shuffles with its own seeded generator (same on every rank);
            # RecBole calls sampler.set_epoch in distributed runs, which it does not need
            train_data.sampler.set_epoch = lambda epoch: None
        base = loss_func or self.model.calculate_loss
        return super()._train_epoch(
            train_data, epoch_idx, lambda inter: self._slice_loss(base, inter), show_progress
        )

    def _slice_loss(self, loss_func, interaction):
        n = len(interaction)
        lo, hi = self._rank * n // self._world, (self._rank + 1) * n // self._world
        if hi == lo:  # fewer rows than ranks: contribute nothing, keep DDP's hooks firing
            return sum(p.sum() * 0 for p in self.model.parameters())
        weight = self._world * (hi - lo) / n
        losses = loss_func(interaction[lo:hi])
        if isinstance(losses, tuple):
            return tuple(weight * loss for loss in losses)
        return weight * losses
