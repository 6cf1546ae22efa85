import pytest
import pytorch_lightning as pl
import torch

from xnorlab.data.datamodule import BatchLoader
from xnorlab.train.epoch_means import EpochMeans


class TwoWays(pl.LightningModule):
    """Logs one per-batch value through Lightning's epoch mean and through EpochMeans."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.means = EpochMeans(("ours",))

    def training_step(self, batch, _):
        x, _y = batch
        value = (x @ self.w).sin().mean()
        self.log("lightning", value, on_step=False, on_epoch=True, batch_size=len(x))
        self.means.add(value, batch_size=len(x))
        if self.trainer.is_last_batch:
            self.log_dict(self.means.pop(), on_step=False, on_epoch=True, batch_size=1)
        return value

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_epoch_mean_has_lightnings_bits():
    # 1003 rows at batch 100: ten full batches and a last one of 3, so the weights matter.
    x = torch.randn(1003, 3, generator=torch.Generator().manual_seed(0))
    loader = BatchLoader(x, torch.zeros(1003, dtype=torch.long), 100, shuffle=False, seed=0)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TwoWays(), train_dataloaders=loader)
    m = trainer.callback_metrics
    assert m["ours"].dtype == m["lightning"].dtype == torch.float32
    assert m["ours"].item() == m["lightning"].item()


def test_checks_its_input():
    means = EpochMeans(("a", "b"))
    with pytest.raises(ValueError, match="no batch"):
        means.pop()
    with pytest.raises(ValueError, match="expected 2 values"):
        means.add(torch.tensor(1.0), batch_size=4)
    means.add(torch.tensor(1.0), torch.tensor(3.0), batch_size=4)
    means.add(torch.tensor(2.0), torch.tensor(0.0), batch_size=2)
    assert means.pop() == {"a": torch.tensor(8 / 6), "b": torch.tensor(2.0)}
