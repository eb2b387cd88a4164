"""Lightning data module: one target, seeded splits grouped by parent configuration, scalers from train only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from ase import Atoms
from torch.utils.data import ConcatDataset, Dataset
from torch_geometric.loader import DataLoader

from capml.data.graph_dataset import CrystalGraphDataset
from capml.errors import InputError
from capml.io.contract import refuse_mixed_settings, refuse_repeated_ids
from capml.graphs.build import DEFAULT_CUTOFF_A
from capml.graphs.normalise import FeatureScaler, TargetScaler
from capml.io.split import grouped_folds, grouped_split

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def node_features(dataset: CrystalGraphDataset, graphs: np.ndarray) -> np.ndarray:
    """Node-feature rows of the given graphs of an in-memory dataset."""
    bounds = dataset.slices["x"].numpy()
    graph_of_node = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    return dataset._data.x.numpy()[np.isin(graph_of_node, graphs)]


class CommonKeys(Dataset):
    """The graphs of ``dataset`` with only the attributes in ``keys``."""

    def __init__(self, dataset, keys: set[str]):
        self.dataset, self.keys = dataset, keys

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int):
        graph = self.dataset[k]
        for key in set(graph.keys()) - self.keys:
            del graph[key]
        return graph


class GraphDataModule(pl.LightningDataModule):
    """Frames lacking ``target`` are dropped (and counted in the log) before splitting, so a fidelity
    labelled on a subset (e.g. gap_hse06 on every third frame) trains on that subset only.
    ``exclude_labelled`` drops the frames that carry that target as well: stage 1 of two-stage training
    pretrains on the frames the accurate fidelity does not cover, keeping the two stages disjoint.
    ``exclude_held_out_of`` drops only the structures (split groups) that a run on that target, with the same
    split settings, holds out for validation and test: pretraining never sees what the fine-tuned model is judged
    on, even where every frame carries both fidelities.
    ``max_frames`` keeps the first frames of the file only, so a model trained on a smaller, earlier file is
    reproduced from the grown one (label runs keep the file in the order of their input).
    ``extra_train`` lists further dataset files whose frames carrying ``target`` all join the training split after
    the split is drawn (active learning: MD snapshots labelled by ``simulate.py stage=md_check``), so validation
    and test stay comparable with a run without them."""

    def __init__(
        self,
        path: str | Path,
        target: str = "gap_pbesol",
        cutoff_A: float = DEFAULT_CUTOFF_A,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        group_key: str = "config_id",
        batch_size: int = 32,
        num_workers: int = 0,
        cache_dir: str | Path | None = None,
        exclude_labelled: str | None = None,
        exclude_held_out_of: str | None = None,
        max_frames: int | None = None,
        extra_train: Sequence[str | Path] = (),
        cv_folds: int | None = None,
        cv_fold: int = 0,
        cv_seed: int | None = None,
        descriptors: str | None = None,
    ):
        super().__init__()
        self.path = Path(path)
        self.target = target
        self.cutoff_A = cutoff_A
        self.split_fractions = tuple(split_fractions)
        self.split_seed = split_seed
        self.group_key = group_key
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.exclude_labelled = exclude_labelled
        self.exclude_held_out_of = exclude_held_out_of
        self.max_frames = max_frames
        self.extra_train = [Path(p) for p in (extra_train or ())]
        self.cv_folds = cv_folds
        self.cv_fold = int(cv_fold)
        self.cv_seed = split_seed if cv_seed is None else int(cv_seed)
        # node inputs: elemental features, plus a MACE model's invariant descriptors when named
        self.descriptors = None
        if descriptors:
            from capml.graphs.descriptors import portable

            self.descriptors = portable(descriptors)
        if cv_folds is not None and not 0 <= self.cv_fold < cv_folds:
            raise InputError(f"data.cv_fold={cv_fold}: expected 0..{cv_folds - 1} (data.cv_folds={cv_folds})")
        self.extra: list[tuple[CrystalGraphDataset, np.ndarray]] = []
        self.dataset: CrystalGraphDataset | None = None
        self.indices: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        dataset = CrystalGraphDataset(self.path, self.cutoff_A, self.cache_dir, self.descriptors)
        values = dataset.target(self.target)
        keep = np.isfinite(values)
        if self.max_frames is not None:
            if not 0 < self.max_frames <= len(values):
                raise InputError(f"{self.path}: data.max_frames={self.max_frames}, expected 1..{len(values)} "
                                 "(the frames in the file)")
            keep[self.max_frames:] = False
        if self.exclude_labelled:
            keep &= ~np.isfinite(dataset.target(self.exclude_labelled))
        if self.exclude_held_out_of:
            keep &= ~self._held_out_by(dataset, self.exclude_held_out_of, keep.size)
        labelled = np.flatnonzero(keep)
        considered = len(values) if self.max_frames is None else self.max_frames
        dropped = considered - len(labelled)
        if dropped:
            log.info("%s: dropped %d of %d frames without '%s'%s", self.path, dropped, considered, self.target,
                     f" or with '{self.exclude_labelled}'" if self.exclude_labelled else "")
        self.dropped = dropped
        frames = [Atoms(info=dataset.meta["info"][k]) for k in labelled]
        if self.cv_folds:
            # grouped k-fold: the test split is fold cv_fold (folds drawn over every frame of the file, so all
            # targets share them). The other folds are split as a model trained on all the data splits the file
            # (split_fractions with split_seed), and that split's test part is left unused, so that a member of a
            # cross-validated ensemble differs from its siblings exactly as a bundled ensemble member does
            fold = grouped_folds([Atoms(info=info) for info in dataset.meta["info"]], self.cv_folds,
                                 self.cv_seed, self.group_key)[labelled]
            rest = np.flatnonzero(fold != self.cv_fold)
            parts = grouped_split([frames[k] for k in rest], self.split_fractions, seed=self.split_seed,
                                  group_key=self.group_key)
            parts = [rest[parts[0]], rest[parts[1]], np.flatnonzero(fold == self.cv_fold)]
        else:
            parts = grouped_split(frames, self.split_fractions, seed=self.split_seed, group_key=self.group_key)
        self.indices = {name: labelled[part] for name, part in zip(SPLITS, parts)}
        for name in ("train", "val"):
            if len(self.indices[name]) == 0:
                raise InputError(
                    f"{self.path}: the {name} split is empty ({len(labelled)} frames with '{self.target}', "
                    f"fractions {list(self.split_fractions)}); add data or change data.split_fractions"
                )
        self.dataset = dataset
        fidelities = [part.removeprefix("gap_") for part in str(self.target).split("_minus_")
                      if part.startswith("gap_")] or ["REF"]
        refuse_mixed_settings([self.path, *self.extra_train], fidelities,
                              "data.extra_train expects labels of the dataset's settings")
        self.extra = [self._extra_frames(CrystalGraphDataset(path, self.cutoff_A, self.cache_dir, self.descriptors))
                      for path in self.extra_train]
        refuse_repeated_ids([(str(d.path), [info.get("structure_id") for info in d.meta["info"]])
                             for d in [dataset] + [extra for extra, _ in self.extra]],
                            "data.extra_train expects new structures")
        log.info("%s: target %s, frames train/val/test = %s%s", self.path, self.target,
                 "/".join(str(len(self.indices[s])) for s in SPLITS),
                 f" (+{self.n_extra} extra training frames)" if self.extra else "")

    def _held_out_by(self, dataset, target: str, n: int) -> np.ndarray:
        """Frames whose split group a run on ``target`` (same fractions, seed and group key) puts in validation
        or test."""
        infos = dataset.meta["info"]
        covered = np.isfinite(dataset.target(target))
        if self.max_frames is not None:
            covered[self.max_frames:] = False
        other = np.flatnonzero(covered)
        parts = grouped_split([Atoms(info=infos[k]) for k in other], self.split_fractions, seed=self.split_seed,
                              group_key=self.group_key)
        held = {infos[k].get(self.group_key) for k in other[np.concatenate(parts[1:])]}
        return np.array([infos[k].get(self.group_key) in held for k in range(n)], dtype=bool)

    def _extra_frames(self, extra: CrystalGraphDataset) -> tuple[CrystalGraphDataset, np.ndarray]:
        """An extra_train file and the indices of its frames that carry the target."""
        if self.target not in extra.targets:
            log.warning("%s: no '%s' in this extra_train file; it adds nothing", extra.path, self.target)
            return extra, np.zeros(0, dtype=int)
        return extra, np.flatnonzero(np.isfinite(extra.target(self.target)))

    @property
    def n_extra(self) -> int:
        return int(sum(len(idx) for _, idx in self.extra))

    def subset(self, split: str):
        """The graphs of ``split``; the training split ends with the extra_train frames."""
        graphs = self.dataset[torch.as_tensor(self.indices[split])]
        if split != "train" or not self.n_extra:
            return graphs
        parts = [graphs] + [extra[torch.as_tensor(idx)] for extra, idx in self.extra if len(idx)]
        # files carry different targets (gap_hse06 in one, not in another): a batch needs the same keys throughout
        common = set.intersection(*(set(part[0].keys()) for part in parts))
        return ConcatDataset([CommonKeys(part, common) for part in parts])

    def records(self, split: str) -> tuple[list[str], np.ndarray]:
        """structure_ids and reference targets of ``split``, in the order of :meth:`subset`."""
        parts = [(self.dataset, self.indices[split])] + ([e for e in self.extra if len(e[1])] if split == "train" else [])
        ids = [str(d.meta["info"][k].get("structure_id", k)) for d, idx in parts for k in idx]
        return ids, np.concatenate([d.target(self.target)[idx] for d, idx in parts])

    def feature_scaler(self) -> FeatureScaler:
        """Node-feature standardisation fitted on the training graphs only."""
        parts = [(self.dataset, self.indices["train"])] + self.extra
        return FeatureScaler.fit(np.concatenate([node_features(d, idx) for d, idx in parts]))

    def target_scaler(self, kind: str) -> TargetScaler:
        """Target scaling fitted on the training targets only."""
        return TargetScaler.fit(self.records("train")[1], kind)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        subset = self.subset(split)
        sampler = EpochShuffle(len(subset), self.split_seed) if shuffle else None
        return DataLoader(subset, batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class EpochShuffle(torch.utils.data.Sampler):
    """A new order every epoch, drawn from (seed, epoch) alone: Lightning calls ``set_epoch`` before each epoch, so
    a training resumed from a checkpoint sees the orders it would have seen without the stop."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())
