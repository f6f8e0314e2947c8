"""Errors raised while a DataLoader worker reads an item reach the main process as themselves."""

import pickle

import pytest
import torch
from torch.utils.data import Dataset

from puzzlecam.data.loader import CheckedLoader
from puzzlecam.errors import ConfigError, DataError, RunDirError, StageError, TrainingError


class _BadItem(Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 3:
            raise DataError("/data/images/img 3.jpg", "cannot be read as an image (truncated)")
        return torch.full((2,), float(index))


@pytest.mark.parametrize(
    "error",
    [
        DataError("/a/b.png", "bad: really"),
        ConfigError("cams.scales: empty"),
        RunDirError("runs/x: other config"),
        TrainingError("loss nan"),
        StageError("stage cams/x/train: disk full"),
    ],
)
def test_errors_pickle_to_equal_errors(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    if isinstance(error, DataError):
        assert again.path == error.path and again.problem == error.problem


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("batch_size", [None, 2])
def test_worker_error_arrives_as_the_data_error(workers, batch_size):
    loader = CheckedLoader(_BadItem(), batch_size=batch_size, num_workers=workers)
    with pytest.raises(DataError) as caught:
        list(loader)
    assert caught.value.path.name == "img 3.jpg"
    assert str(caught.value) == "/data/images/img 3.jpg: cannot be read as an image (truncated)"


def test_good_items_load_as_with_torch():
    class Good(_BadItem):
        def __len__(self) -> int:
            return 3

    batches = list(CheckedLoader(Good(), batch_size=2, num_workers=0))
    assert [b.shape for b in batches] == [(2, 2), (1, 2)]
    assert [float(b[0]) for b in CheckedLoader(Good(), batch_size=None)] == [0.0, 1.0, 2.0]
