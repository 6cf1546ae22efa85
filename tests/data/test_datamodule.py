"""The data module's splits, batches and limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.test_readers import make_idx_dataset
from xnorlab.data.datamodule import ImageDataModule, split_train_val


def test_split_last_keeps_the_tail_for_validation():
    train, val = split_train_val(10, 3, "last", seed=0)
    assert train.tolist() == list(range(7)) and val.tolist() == [7, 8, 9]


def test_random_split_is_seeded_and_disjoint():
    a = split_train_val(100, 20, "random", seed=1)
    b = split_train_val(100, 20, "random", seed=1)
    c = split_train_val(100, 20, "random", seed=2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    assert set(a[0]).isdisjoint(a[1]) and len(a[0]) + len(a[1]) == 100


def test_bad_split_arguments_fail_clearly():
    with pytest.raises(ValueError, match="val_size"):
        split_train_val(10, 10, "last", 0)
    with pytest.raises(ValueError, match="'last' or 'random'"):
        split_train_val(10, 2, "middle", 0)


def test_datamodule_batches(tmp_path):
    cfg = make_idx_dataset(tmp_path, n_train=20, n_test=10)
    dm = ImageDataModule(cfg, tmp_path, batch_size=6, eval_batch_size=4, val_size=5)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader()) == 3
    assert sum(len(y) for _, y in batches) == 15
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
    assert 0.0 <= x.min() and x.max() <= 1.0 and y.dtype == torch.int64
    assert sum(len(y) for _, y in dm.val_dataloader()) == 5
    assert sum(len(y) for _, y in dm.test_dataloader()) == 10
    # the validation split is the last 5 training images, untouched by shuffling
    val_x = torch.cat([x for x, _ in dm.val_dataloader()])
    raw = np.asarray(dm.splits["val"][0] * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(val_x * 255).round().astype(np.uint8), raw)


def test_limits_and_normalization(tmp_path):
    cfg = make_idx_dataset(tmp_path, n_train=20, n_test=10)
    dm = ImageDataModule(cfg, tmp_path, val_size=5, train_limit=4, eval_limit=3, normalize=True)
    dm.setup()
    assert len(dm.splits["train"][1]) == 4 and len(dm.splits["test"][1]) == 3
    assert dm.splits["train"][0].min() < 0  # (x - 0.5) / 0.5 reaches below zero


def test_train_loader_state_restores_the_next_epoch_order():
    # Regression (fault harness): a resumed run restarted the shuffle from the seed, so after a
    # kill it trained on other epoch orders than an unkilled run and its metrics differed.
    from xnorlab.data.datamodule import BatchLoader

    x, y = torch.arange(20.0)[:, None], torch.arange(20)
    first = BatchLoader(x, y, batch_size=5, shuffle=True, seed=3)
    list(first)  # epoch 1
    state = first.state_dict()
    epoch2 = [b[1].tolist() for b in first]
    resumed = BatchLoader(x, y, batch_size=5, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    assert [b[1].tolist() for b in resumed] == epoch2
    fresh = BatchLoader(x, y, batch_size=5, shuffle=True, seed=3)
    assert [b[1].tolist() for b in fresh] != epoch2


def test_data_module_state_carries_the_shuffle_across_a_resume(tmp_path):
    # Lightning restores a data module's state on every resume (a loader's only mid-epoch).
    from xnorlab.data.arrays import ImageArrays

    rng = np.random.default_rng(0)
    arrays = ImageArrays(rng.integers(0, 256, (40, 1, 4, 4), dtype=np.uint8), np.arange(40),
                         rng.integers(0, 256, (5, 1, 4, 4), dtype=np.uint8), np.arange(5))
    dm = ImageDataModule({"name": "t"}, tmp_path, batch_size=10, val_size=10, arrays=arrays)
    dm.setup()
    list(dm.train_dataloader())
    state = dm.state_dict()
    epoch2 = [b[1].tolist() for b in dm.train_dataloader()]
    resumed = ImageDataModule({"name": "t"}, tmp_path, batch_size=10, val_size=10, arrays=arrays)
    resumed.setup()
    resumed.load_state_dict(state)
    assert [b[1].tolist() for b in resumed.train_dataloader()] == epoch2
