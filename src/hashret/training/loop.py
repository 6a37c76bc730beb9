"""The training loop, shared by every hashing method.

What differs between methods comes from :mod:`hashret.training.methods`: the loss, the
batch sampler (random permutation or class-balanced P x K batches) and the validation
statistic that selects the checkpoint. What the batches are made of comes from the inputs:
augmented pixels through the whole model (:mod:`hashret.training.inputs`), or backbone
features cached once for a frozen backbone (:mod:`hashret.training.frozen`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hashret.codes import encode as pack_activations
from hashret.data import DatasetSplits, ImageArray, load_dataset
from hashret.data.splits import stratified_split
from hashret.eval.protocol import Protocol, evaluate_codes
from hashret.io import read_json, write_json
from hashret.losses import HashLoss
from hashret.models import ModelConfig, build_model, get_backbone_spec, load_pretrained
from hashret.models.backbones import default_normalisation
from hashret.outdir import claim_dir, owned_entries
from hashret.threads import apply_threads
from hashret.training import distributed as dist_
from hashret.training.checkpoint import (
    MODEL_FILE,
    load_resume_state,
    load_weights,
    save_checkpoint,
    save_resume_state,
)
from hashret.training.config import TrainConfig
from hashret.training.frozen import FeatureInputs, cache_features, freeze_backbone
from hashret.training.inputs import PixelInputs
from hashret.training.methods import (
    create_loss,
    create_sampler,
    get_training_method,
    resolve_batches,
)
from hashret.training.recipes import Lookahead, make_lookahead, make_optimizer
from hashret.training.recipes import start_epoch as start_recipe_epoch
from hashret.training.schedule import one_cycle

CONFIG_FILE = "config.json"
LAST_FILE = "last.safetensors"
RESUME_FILE = "resume.pt"
HISTORY_FILE = "history.json"
#: what training writes into a run directory (what ``--overwrite`` may replace); last: temp files
RUN_FILES = (CONFIG_FILE, MODEL_FILE, LAST_FILE, RESUME_FILE, HISTORY_FILE, ".*.tmp")


@dataclass
class TrainResult:
    """What :func:`train` leaves behind: ``run_dir`` holds model, config, history."""

    run_dir: Path
    model: nn.Module
    model_config: ModelConfig
    train_config: TrainConfig
    history: list[dict[str, Any]]
    train_seconds: float
    best_epoch: int
    #: rise per epoch of the validation statistic over the last epochs when it was still
    #: rising at the end (more epochs would likely help), else None
    still_improving: float | None = None


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``uint8[n, h, w, c]`` -> ``uint8[n, c, h, w]`` tensor (pixels stay bytes until batching)."""
    return torch.from_numpy(np.array(images.transpose(0, 3, 1, 2), order="C"))


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``uint8[n, h, w, c]`` pixels scaled to [0, 1]."""
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return tuple(x.mean(0).round(6).tolist()), tuple(np.maximum(x.std(0), 1e-3).round(6).tolist())


def make_model_config(cfg: TrainConfig, data: DatasetSplits) -> ModelConfig:
    """The model a training config implies for a dataset (input size, channels, statistics).

    The input side is ``cfg.input_size``, else the backbone's own (224 for the ImageNet
    nets), else the images' (at least 16); the normalisation is the backbone's (ImageNet
    statistics for the ImageNet nets), else the training images' own.
    """
    train = data.train
    h, w, c = train.images.shape[1:]
    side = cfg.input_size or get_backbone_spec(cfg.backbone).input_size or max(16, h, w)
    mean, std = default_normalisation(cfg.backbone, c) or channel_stats(train.images[: 20000])
    return ModelConfig(
        method=cfg.method, backbone=cfg.backbone, bits=cfg.bits, num_classes=len(train.classes),
        in_channels=c, input_size=(side, side), mean=mean, std=std,
        classes=tuple(train.classes),
    )


def split_validation(train: ImageArray, fraction: float, seed: int) -> tuple[ImageArray, ImageArray]:
    """Carve a stratified validation set out of the training set (never the test queries)."""
    if fraction <= 0:
        return train, train.subset(np.zeros(0, dtype=np.int64))
    keep, val = stratified_split(train.labels, fraction, seed)
    return train.subset(keep), train.subset(val)


@torch.no_grad()
def evaluate_validation(model: nn.Module, loss_fn: HashLoss, inputs: PixelInputs | FeatureInputs,
                        labels: torch.Tensor, batch_size: int, device: str) -> dict[str, float]:
    """Validation statistics (no augmentation).

    * ``val_loss``, ``val_acc``: classification loss and accuracy (methods with a classifier);
    * ``val_map``: full-ranking mAP of the validation codes, the even-numbered validation
      items querying the odd-numbered ones (Hamming ties by database order).
    """
    if len(inputs) == 0:
        return {}
    model.eval()
    total, correct, n = 0.0, 0, 0
    latents = []
    for i in range(0, len(inputs), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(inputs)))
        y = labels[idx].to(device)
        out = inputs.forward(model, idx, train=False)
        latents.append(out.latent.float().cpu())
        if out.logits is not None:
            total += float(loss_fn(out, y)) * len(y)
            correct += int((out.logits.argmax(1) == y).sum())
        n += len(y)
    stats = {"val_loss": total / n, "val_acc": correct / n} if out.logits is not None else {}
    if n >= 2:
        codes = pack_activations(torch.cat(latents).numpy(), float(model.threshold))
        y_all = labels.numpy()
        res = evaluate_codes(codes[0::2], y_all[0::2], codes[1::2], y_all[1::2],
                             bits=model.config.bits, protocol=Protocol("validation", k=n),
                             pk_max=1, workers=1)
        stats["val_map"] = res["map"]
    return stats


def _claim_run_dir(run_dir: Path, resume: bool, overwrite: bool, write: bool) -> None:
    """Refuse a used run directory unless resuming / overwriting; never touch a user's files.

    Every process checks (so every one raises the same error); the one with ``write`` claims."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} is a file: give a directory for the run")
    if resume:
        claim_dir(run_dir, "run", RUN_FILES, overwrite=True, replace=False, compatible=("demo",),
                  write=write)
        return
    if run_dir.exists() and owned_entries(run_dir, RUN_FILES[:-1]) and not overwrite:
        raise ValueError(
            f"run directory {run_dir} already holds a run: pass --resume to continue it, "
            "--overwrite to train over it, or choose another --out"
        )
    claim_dir(run_dir, "run", RUN_FILES, overwrite=overwrite, compatible=("demo",), write=write)


_Inputs = PixelInputs | FeatureInputs

#: options that only say how to run, not what is trained: ``--resume`` may change them
RUNTIME_OPTIONS = ("epochs", "patience", "threads", "device", "data_dir")


def resume_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The options (CLI spelling) in which ``cfg`` differs from a run's saved training config,
    leaving out :data:`RUNTIME_OPTIONS`; each as ``--name OLD -> NEW``."""
    before = TrainConfig.from_dict(saved).to_dict()  # options added since then take their defaults
    now = cfg.to_dict()
    return [f"--{k.replace('_', '-')} {before[k]} -> {now[k]}" for k in now
            if k not in RUNTIME_OPTIONS and before.get(k) != now[k]]


def still_improving(history: list[dict[str, Any]], key: str, last: int = 3) -> float | None:
    """How much the validation statistic ``key`` rose per epoch over the ``last`` epochs, when
    the last epoch is the best one and it rose at all; else None (training had levelled off)."""
    scores = [h[key] for h in history if key in h]
    if len(scores) < 2 or scores[-1] < max(scores) or scores[-1] <= scores[max(0, len(scores) - 1 - last)]:
        return None
    span = min(last, len(scores) - 1)
    return (scores[-1] - scores[-1 - span]) / span


@dataclass
class _Progress:
    """What the loop carries from epoch to epoch (and saves in ``resume.pt``)."""

    history: list[dict[str, Any]]
    train_seconds: float = 0.0
    best_score: float = -1.0
    best_epoch: int = -1
    start_epoch: int = 0


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          data: DatasetSplits | None = None, cache_dir: str | Path | None = None,
          progress: bool = True,
          on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train a hashing model and write the run directory.

    ``run_dir`` receives ``config.json`` (train + model config), ``model.safetensors``
    (the epoch with the best validation statistic of the method: accuracy for DLBHC, mAP
    for the triplet method; the last epoch without a validation split),
    ``last.safetensors`` + ``resume.pt``
    (to continue after an interruption with ``resume=True``) and ``history.json``.
    Training is reproducible: the same config and seed give the same weights, whether
    or not the run was interrupted and resumed (it restarts the interrupted epoch).
    With ``cfg.patience`` it stops once the validation statistic has not improved for that
    many epochs (``cfg.epochs`` is then the most it trains).
    ``on_epoch_end(stats)`` is called after each epoch's checkpoint is written.
    """
    run_dir = Path(run_dir)
    joined = dist_.init_distributed(cfg.device)  # under torchrun: join the group (gloo on CPU)
    world = dist_.world()
    progress = progress and world.main
    _claim_run_dir(run_dir, resume, overwrite, write=world.main)
    dist_.barrier()  # every rank has checked the directory before rank 0 writes into it
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, cache_dir=cache_dir, seed=cfg.seed,
                            test_fraction=cfg.test_fraction, on_bad_image=cfg.on_bad_image,
                            size=cfg.image_size, class_names=cfg.class_names)
    cfg = _resolve(cfg, data)
    method = get_training_method(cfg.method)
    train_set, val_set = split_validation(data.train, cfg.val_fraction, cfg.seed)
    cfg = resolve_batches(cfg, train_set.labels)  # P x K of class-balanced batches
    sampler = create_sampler(cfg, train_set.labels)
    torch.manual_seed(cfg.seed)
    model_cfg = make_model_config(cfg, data)
    model = build_model(model_cfg)
    if cfg.pretrained:  # before the resume check: a resumed run's weights replace these anyway
        load_pretrained(model.backbone, model_cfg.backbone, cfg.pretrained)
    model.to(cfg.device)

    state = _load_resume(run_dir, cfg, model) if resume and (run_dir / RESUME_FILE).exists() else None
    run_dir.mkdir(parents=True, exist_ok=True)
    if world.main:  # rank 0 alone writes the run directory
        write_json(run_dir / CONFIG_FILE, {"train": cfg.to_dict(), "model": model_cfg.to_dict(),
                                           "dataset": {"name": data.name, "source": data.source,
                                                       "image_shape": list(data.train.images.shape[1:])}})
    y_train = torch.from_numpy(train_set.labels.astype(np.int64))
    y_val = torch.from_numpy(val_set.labels.astype(np.int64))
    inputs, val_inputs, feature_seconds = _make_inputs(cfg, model, train_set, val_set,
                                                       fresh=state is None, progress=progress)
    loss_fn = create_loss(cfg)
    opt = make_optimizer(model, cfg.recipe, lr=cfg.lr, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay, batch_size=cfg.batch_size)
    lookahead = make_lookahead(cfg.recipe)
    total_steps = sampler.steps_per_epoch * cfg.epochs
    prog = _Progress(history=[])
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        prog = _Progress(list(state["history"]), float(state["train_seconds"]), float(state["best_acc"]),
                         int(state["best_epoch"]), int(state["epoch"]) + 1)
        if lookahead is not None:
            lookahead.resume(model, prog.start_epoch)
    prog.train_seconds += feature_seconds

    train_model = dist_.wrap_model(model)  # DistributedDataParallel under torchrun
    for epoch in range(prog.start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        stats = _train_epoch(cfg, epoch, model, train_model, inputs, y_train, sampler, loss_fn, opt,
                             lookahead, total_steps, progress)
        t_val = time.perf_counter()
        if world.main:
            stats |= evaluate_validation(model, loss_fn, val_inputs, y_val, 1024, cfg.device)
        stats["val_seconds"] = round(time.perf_counter() - t_val, 2)
        stats = dist_.broadcast_object(stats)  # rank 0's validation selects for every rank
        if dist_.is_distributed():
            stats["rank_digests"] = dist_.gather_digests(model)  # one per rank: equal when in sync
        epoch_seconds = time.perf_counter() - t0
        prog.train_seconds += epoch_seconds
        stats["seconds"] = round(epoch_seconds, 2)
        prog.history.append(stats)
        _select_and_save(run_dir, model, model_cfg, opt, prog, epoch, stats.get(method.select_by, epoch),
                         write=world.main)
        if progress:
            shown = " ".join(f"{k} {stats[k]:.4f}" for k in ("train_acc", "val_loss", "val_acc", "val_map")
                             if k in stats)
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {stats['train_loss']:.3f} {shown}"
                       f"{'' if 'val_map' in stats else ' (no validation split)'} ({epoch_seconds:.1f}s)")
        if on_epoch_end is not None:
            on_epoch_end(stats)
        if cfg.patience is not None and epoch + 1 - prog.best_epoch >= cfg.patience and len(val_set):
            if progress:
                tqdm.write(f"stopping early: validation {method.select_by} has not improved for "
                           f"{cfg.patience} epochs (best: epoch {prog.best_epoch})")
            break

    dist_.barrier()  # rank 0 has written the selected checkpoint
    dist_.shutdown(joined)
    # the selected epoch's weights are what the run hands on
    model = build_model(model_cfg)
    load_weights(model, run_dir / MODEL_FILE)
    model.to(cfg.device)
    return TrainResult(run_dir, model.eval(), model_cfg, cfg, prog.history, prog.train_seconds,
                       prog.best_epoch, still_improving(prog.history, method.select_by))


def _resolve(cfg: TrainConfig, data: DatasetSplits) -> TrainConfig:
    """The config with the dataset's defaults filled in, checked against the job; threads set."""
    cfg = cfg.resolved(data.natural)
    if cfg.freeze_backbone and dist_.is_distributed():
        raise ValueError("--freeze-backbone trains on one process (only the small head learns): "
                         "run it without torchrun")
    apply_threads(cfg.threads)  # torch's threads on a shared CPU: see hashret.threads
    return cfg


def _load_resume(run_dir: Path, cfg: TrainConfig, model: nn.Module) -> dict[str, Any]:
    """The interrupted run's loop state, its last weights loaded into ``model``.

    Raises:
        ValueError: the run was trained with other options (named in the message).
    """
    saved = read_json(run_dir / CONFIG_FILE)
    differ = resume_differences(saved["train"], cfg)
    if differ:
        raise ValueError(
            f"--resume: {run_dir} was trained with other options ({'; '.join(differ)}): resume with "
            f"the run's options (only {', '.join('--' + o.replace('_', '-') for o in RUNTIME_OPTIONS)} "
            "may change), or choose another --out"
        )
    state = load_resume_state(run_dir / RESUME_FILE)
    load_weights(model, run_dir / LAST_FILE)
    return state


def _make_inputs(cfg: TrainConfig, model: nn.Module, train_set: ImageArray, val_set: ImageArray, *,
                 fresh: bool, progress: bool) -> tuple[_Inputs, _Inputs, float]:
    """Training and validation batches' source: augmented pixels through the whole model, or
    features of a frozen backbone computed once (their seconds returned: they count as training).
    A fresh model whose backbone initialises from data (the whitening stem) does so here."""
    x_train, x_val = to_tensor(train_set.images), to_tensor(val_set.images)
    if fresh and not cfg.pretrained and hasattr(model.backbone, "init_from_data"):
        g = torch.Generator().manual_seed(cfg.seed)
        sample = x_train[torch.randperm(len(x_train), generator=g)[:5000]].float().div_(255)
        model.backbone.init_from_data(model.preprocess(sample.to(cfg.device)))
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if not cfg.freeze_backbone:
        pixels = dict(device=cfg.device, precision=cfg.precision, channels_last=cfg.channels_last)
        return (PixelInputs(x_train, pad=cfg.pad, flip=cfg.flip, alternate_flip=bool(cfg.alternate_flip),
                            seed=cfg.seed, **pixels), PixelInputs(x_val, **pixels), 0.0)
    t0 = time.perf_counter()
    freeze_backbone(model)
    feats = {name: cache_features(model, x, device=cfg.device, precision=cfg.precision,
                                  channels_last=cfg.channels_last, progress=progress)
             for name, x in (("train", x_train), ("val", x_val))}
    return (FeatureInputs(feats["train"], cfg.precision), FeatureInputs(feats["val"], cfg.precision),
            time.perf_counter() - t0)


def _train_epoch(cfg: TrainConfig, epoch: int, model: nn.Module, train_model: nn.Module,
                 inputs: _Inputs, y_train: torch.Tensor, sampler: Any,
                 loss_fn: HashLoss, opt: torch.optim.Optimizer, lookahead: Lookahead | None,
                 total_steps: int, progress: bool) -> dict[str, Any]:
    """One pass over the training batches; returns ``{epoch, train_loss[, train_acc],
    data_seconds, step_seconds}``: the time spent making batches (indexing, augmentation) and
    the rest of the pass (forward, backward, optimizer and lookahead steps)."""
    model.train()
    start_recipe_epoch(model, cfg.recipe, epoch)
    if hasattr(inputs, "start_epoch"):
        inputs.start_epoch(epoch)  # the epoch's flip schedule; zeroes its batch-making time
    t_pass = time.perf_counter()
    steps = sampler.steps_per_epoch
    g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    batches = sampler.epoch(g)
    aug_g = dist_.rank_generator(cfg.seed * 100003 + epoch) or g  # own augmentations per rank
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=None if progress else True, leave=False, dynamic_ncols=True)
    run_loss, run_correct, seen, classifies = 0.0, 0, 0, False
    for i in bar:
        step = epoch * steps + i
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * one_cycle(step, total_steps)
        idx = dist_.shard_batch(batches[i])  # this rank's slice of the global batch
        y = y_train[idx].to(cfg.device)
        out = inputs.forward(train_model, idx, train=True, generator=aug_g)
        loss = loss_fn(out, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {float(loss)} at epoch {epoch + 1}, step {i}: lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if lookahead is not None:
            lookahead.step(model, epoch, step + 1, total_steps)
        run_loss += float(loss.detach()) * len(y)
        classifies = out.logits is not None
        if classifies:
            run_correct += int((out.logits.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{run_loss / seen:.3f}",
                        **({"acc": f"{run_correct / seen:.3f}"} if classifies else {}))
    if lookahead is not None:
        lookahead.end_epoch(model)
    run_loss, run_correct, seen = dist_.all_reduce_sums([run_loss, run_correct, seen])
    stats: dict[str, Any] = {"epoch": epoch + 1, "train_loss": run_loss / seen}
    if classifies:
        stats["train_acc"] = run_correct / seen
    data_seconds = float(getattr(inputs, "prep_seconds", 0.0))
    stats["data_seconds"] = round(data_seconds, 2)
    stats["step_seconds"] = round(time.perf_counter() - t_pass - data_seconds, 2)
    return stats


def _select_and_save(run_dir: Path, model: nn.Module, model_cfg: ModelConfig, opt: torch.optim.Optimizer,
                     prog: _Progress, epoch: int, score: float, *, write: bool) -> None:
    """Keep the epoch as the run's model when its validation ``score`` is the best so far (on
    the validation split only; the last epoch without one), and save what a resume needs."""
    extra = {"epoch": epoch + 1, "train_seconds": round(prog.train_seconds, 2)}
    if score >= prog.best_score:
        prog.best_score, prog.best_epoch = score, epoch + 1
        if write:
            save_checkpoint(run_dir / MODEL_FILE, model, model_cfg, extra)
    if not write:
        return
    save_checkpoint(run_dir / LAST_FILE, model, model_cfg, extra)
    save_resume_state(run_dir / RESUME_FILE, {
        "optimizer": opt.state_dict(), "epoch": epoch, "history": prog.history,
        "train_seconds": prog.train_seconds, "best_acc": prog.best_score, "best_epoch": prog.best_epoch,
    })
    write_json(run_dir / HISTORY_FILE, {"epochs": prog.history, "best_epoch": prog.best_epoch,
                                        "train_seconds": round(prog.train_seconds, 2)})
