import numpy as np
import pytest

from capml.errors import InputError
from capml.labels.tblite import TBLiteLabeller
from capml.phonons import load_phonons
from capml.structures.parents import end_member_phonons
from capml.structures.sampler import sample_structures
from capml.structures.system import load_system

SYSTEM = load_system("ag3sbri", supercell=(2, 1, 1))


@pytest.fixture(scope="module")
def parents(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phonons")
    written = end_member_phonons(SYSTEM, TBLiteLabeller().calculator, folder)
    return {species: str(path) for species, path in written.items()}


def test_end_member_phonons_are_phonopy_readable_with_plots(parents):
    for species, path in parents.items():
        phonon = load_phonons(path)
        assert phonon.force_constants.shape == (10, 10, 3, 3)
        folder = (path.rsplit("/", 1))[0]
        assert (np.array(phonon.supercell.symbols) == species).sum() == 2
        import os

        assert os.path.getsize(f"{folder}/band_structure.png") > 10_000
        assert os.path.exists(f"{folder}/imaginary_modes.json")


def test_sample_set_counts_ids_and_reproducibility(parents):
    kwargs = dict(compositions=[0, 0.5, 1], temperatures_K=[150, 600], phonon_samples=3, uniform_samples=2,
                  equilibrium_samples=1, end_member_phonons=parents, seed=11)
    frames = sample_structures(SYSTEM, **kwargs)
    assert len(frames) == 3 * (1 + 2 + 2 * 3)
    ids = [a.info["structure_id"] for a in frames]
    assert len(set(ids)) == len(ids)
    assert {a.info["sampling"] for a in frames} == {"equilibrium", "uniform", "phonon"}
    assert sorted({a.info["x"] for a in frames}) == [0.0, 0.5, 1.0]
    for atoms in frames:
        k = round(atoms.info["x"] * 2)
        assert atoms.get_chemical_symbols().count("Br") == k
    again = sample_structures(SYSTEM, **kwargs)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(frames, again))


def test_hotter_structures_are_displaced_more(parents):
    frames = sample_structures(SYSTEM, compositions=[0.5], temperatures_K=[150, 600], phonon_samples=200,
                               uniform_samples=0, equilibrium_samples=1, end_member_phonons=parents, seed=3)
    reference = next(a for a in frames if a.info["sampling"] == "equilibrium")
    msd = {}
    for t in (150.0, 600.0):
        disp = [a.positions - reference.positions for a in frames if a.info["temperature"] == t]
        msd[t] = float(np.mean(np.square(disp)))
    # harmonic classical limit: <u^2> grows ~ linearly with T (quantum zero point makes it sub-linear)
    assert 2.0 < msd[600.0] / msd[150.0] < 4.3


def test_phonon_sampling_needs_parents():
    with pytest.raises(InputError, match="end_member_phonons"):
        sample_structures(SYSTEM, compositions=[0], temperatures_K=[300], phonon_samples=1, uniform_samples=0,
                          equilibrium_samples=0, end_member_phonons=None)
    for x in (0.3, 2):  # not k/2 for the 2 mixed sites of the 2x1x1 cell
        with pytest.raises(InputError, match="structures.compositions"):
            sample_structures(SYSTEM, compositions=[x], temperatures_K=[300], phonon_samples=0, uniform_samples=1,
                              equilibrium_samples=0, end_member_phonons=None)
