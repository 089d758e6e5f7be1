"""Seeds split across processes: shares, refusals, and what a single process sees."""

from __future__ import annotations

import numpy as np
import pytest

from reinforce_jax.errors import ConfigError
from reinforce_jax.trainers.distributed import SeedSplit, check_split, seed_split


def test_a_single_process_trains_every_seed_and_gathers_what_it_has():
    split = seed_split(6)
    assert split == SeedSplit(0, 6, 6, 1)
    tree = {"a": np.arange(12).reshape(6, 2), "b": np.arange(6)}
    taken = split.take(tree)
    np.testing.assert_array_equal(taken["a"], tree["a"])
    np.testing.assert_array_equal(split.gather(taken)["b"], tree["b"])


def test_each_process_takes_its_contiguous_share():
    tree = {"key": np.arange(8)[:, None] * np.ones((1, 2), np.uint32)}
    shares = [SeedSplit(i * 2, i * 2 + 2, 8, 4).take(tree)["key"][:, 0].tolist() for i in range(4)]
    assert shares == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_a_checkpoint_of_another_seed_count_is_refused():
    with pytest.raises(ConfigError, match="holds .6,. seeds, this run 4"):
        SeedSplit(0, 2, 4, 2).take({"0": np.zeros((6, 3))})


@pytest.mark.parametrize("items, processes", [(3, 2), (4, 3), (1, 2)])
def test_uneven_splits_are_refused(items, processes):
    with pytest.raises(ConfigError, match=f"{items} seeds cannot be split evenly"):
        check_split(items, processes)
    check_split(items * processes, processes)
