"""The LightningModule shared by every neural architecture and binarization method."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from xnorlab.models.build import build_model
from xnorlab.quant.layers import (
    clip_latent_weights,
    glorot_lr_scale,
    init_latent_uniform,
    is_binary_layer,
)
from xnorlab.quant.registry import quantizer_class
from xnorlab.train.epoch_means import EpochMeans
from xnorlab.train.recalibrate import needs_recalibration, recalibrate_batchnorm


def squared_hinge(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The BNN paper's loss: mean over classes of max(0, 1 - t * s)^2 with t in {-1, +1}."""
    t = F.one_hot(target, scores.shape[1]).float() * 2 - 1
    return F.relu(1 - t * scores).pow(2).mean()


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target term, scaled by T^2 so its gradient keeps its size."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean"
    ) * (t * t)


def uses_paper_recipe(cfg: dict[str, Any]) -> bool:
    """Whether latent weights start U(-1, 1) with Glorot-scaled learning rates (BinaryConnect).

    `auto` turns it on for stochastic weight binarization, which stays at chance from
    PyTorch's default initialization (every sampled weight is then nearly a coin flip).
    """
    recipe = cfg["optim"]["latent_recipe"]
    if recipe == "auto":
        name = cfg["quant"].get("weight_quantizer")
        return name is not None and quantizer_class(name).stochastic
    return recipe == "paper"


def build_from_config(cfg: dict[str, Any]) -> nn.Module:
    """The network described by a resolved training config."""
    ds = cfg["dataset"]
    return build_model(
        cfg["model"], cfg["quant"], tuple(ds["shape"]), ds["num_classes"], ds["mean"], ds["std"]
    )


class Classifier(pl.LightningModule):
    """Trains `build_from_config(cfg)` with Adam and an exponentially decaying learning rate.

    `cfg` is the resolved training config (plain dict); it is saved in every checkpoint, so
    `Classifier.load_from_checkpoint(path)` rebuilds the same network.
    """

    def __init__(self, cfg: dict[str, Any], teacher: nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = cfg
        self.model = build_from_config(cfg)
        # Kept out of the module tree so checkpoints hold the student only.
        self.__dict__["teacher"] = (
            teacher.eval().requires_grad_(False) if teacher is not None else None
        )
        self.clip = bool(cfg["quant"].get("clip_latent", False))
        self.recalibrate = needs_recalibration(self.model)
        self.paper_recipe = uses_paper_recipe(cfg)
        if self.paper_recipe:
            init_latent_uniform(self.model)
        self._train_means = EpochMeans(("train_loss", "train_acc"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.cfg["optim"]["loss"] == "squared_hinge":
            return squared_hinge(scores, y)
        return F.cross_entropy(scores, y)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        scores = self(x)
        loss = self._loss(scores, y)
        if self.teacher is not None:
            d = self.cfg["distill"]
            with torch.no_grad():
                teacher_scores = self.teacher(x)
            soft = distill_loss(scores, teacher_scores, d["temperature"])
            loss = (1 - d["weight"]) * loss + d["weight"] * soft
        self._train_means.add(loss, (scores.argmax(1) == y).float().mean(), batch_size=len(y))
        if self.trainer.is_last_batch:
            # sync_dist: under DDP every rank sees the mean over all ranks (no-op on one process)
            self.log_dict(self._train_means.pop(), on_step=False, on_epoch=True,
                          batch_size=1, sync_dist=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_means = EpochMeans(("train_loss", "train_acc"))

    def on_train_batch_end(self, *args: Any) -> None:
        # BinaryConnect/BNN keep latent weights in [-1, 1] after every optimizer step.
        if self.clip:
            clip_latent_weights(self.model)

    def on_validation_model_eval(self) -> None:
        # BatchNorm statistics of the eval-mode network (train/recalibrate.py), so val_acc,
        # the best checkpoint and the export all see them.
        batches = self.cfg["optim"]["bn_recalibration_batches"]
        dm = getattr(self.trainer, "datamodule", None)
        if self.recalibrate and batches and dm is not None and "train" in dm.splits:
            size = self.cfg["data"]["batch_size"]
            recalibrate_batchnorm(self.model, dm.splits["train"][0][: batches * size], size)
        super().on_validation_model_eval()

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> None:
        x, y = batch
        scores = self(x)
        self.log_dict(
            {f"{prefix}_loss": self._loss(scores, y),
             f"{prefix}_acc": (scores.argmax(1) == y).float().mean()},
            on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True,
        )

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self._eval_step(batch, "test")

    def _param_groups(self, lr: float) -> list[dict[str, Any]]:
        if not self.paper_recipe:
            return [{"params": list(self.model.parameters())}]
        # BinaryConnect's recipe: each binary layer's latent weights get lr * Glorot factor.
        binary = [m for m in self.model.modules() if is_binary_layer(m) and m.binary_kernel]
        taken = {id(m.weight) for m in binary}
        rest = [p for p in self.model.parameters() if id(p) not in taken]
        return [{"params": rest}] + [
            {"params": [m.weight], "lr": lr * glorot_lr_scale(m)} for m in binary
        ]

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg["optim"]
        epochs = max(1, int(self.cfg["trainer"]["max_epochs"]))
        opt = torch.optim.Adam(self._param_groups(o["lr"]), lr=o["lr"],
                               weight_decay=o["weight_decay"])
        # lr * gamma^epochs = lr_end: the BNN paper's exponential decay, per epoch.
        gamma = math.exp(math.log(o["lr_end"] / o["lr"]) / epochs)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
