"""capml.io.split: groups stay together, and a seed gives the same split."""

import numpy as np
import pytest

from capml.errors import InputError
from capml.io.split import grouped_split

from .frames import labelled


def test_grouped_split_keeps_groups_together_and_is_seeded():
    frames = [labelled(i, config=f"c{i % 7}") for i in range(70)]
    splits = grouped_split(frames, (0.6, 0.2, 0.2), seed=5)
    assert sorted(np.concatenate(splits).tolist()) == list(range(70))
    groups = [{frames[i].info["config_id"] for i in split} for split in splits]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    again = grouped_split(frames, (0.6, 0.2, 0.2), seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(splits, again))
    with pytest.raises(InputError, match="fractions"):
        grouped_split(frames, (0.5, 0.2))
