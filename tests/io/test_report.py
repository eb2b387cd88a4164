import json

import numpy as np
from ase.build import bulk

from capml.io.contract import DatasetSettings, write_dataset
from capml.io.report import summarise


def test_summary_counts_and_plots(tmp_path):
    frames = []
    for i in range(12):
        atoms = bulk("Cu", cubic=True)
        atoms.info.update(REF_energy=-4.0 - 0.01 * i, REF_stress=np.zeros((3, 3)), structure_id=f"s{i}",
                          config_id=f"c{i % 3}", x=(i % 3) / 2, temperature=[0.0, 300.0][i % 2],
                          sampling=["equilibrium", "phonon"][i % 2], gap_pbesol=0.5 + 0.01 * i, label_seconds=10.0)
        if i % 3 == 0:
            atoms.info["gap_hse06"] = 1.0 + 0.01 * i
        atoms.arrays["REF_forces"] = np.zeros((4, 3))
        frames.append(atoms)
    path = tmp_path / "d.extxyz"
    write_dataset(path, frames, DatasetSettings({"pbesol": {"ecut_eV": 350}}))
    summary = summarise(path, tmp_path)
    assert summary["n_structures"] == 12
    assert summary["gap_counts"] == {"gap_hse06": 4, "gap_pbesol": 12}
    assert abs(summary["label_hours_total"] - 120 / 3600) < 1e-9
    assert (tmp_path / "gap_histograms.png").stat().st_size > 5000
    saved = json.loads((tmp_path / "dataset_summary.json").read_text())
    assert saved["counts_by_x_and_sampling"]["phonon"] == {"0.0": 2, "0.5": 2, "1.0": 2}


def test_data_card_is_filled_from_the_dataset(tmp_path):
    from capml.io.report import write_card

    frames = []
    for i in range(6):
        atoms = bulk("Cu", cubic=True)
        atoms.info.update(REF_energy=-4.0, REF_stress=np.zeros((3, 3)), structure_id=f"s{i}", config_id=f"c{i}",
                          x=0.5, temperature=300.0, sampling="phonon", gap_pbesol=0.4, label_seconds=90.0)
        atoms.arrays["REF_forces"] = np.zeros((4, 3))
        frames.append(atoms)
    path = tmp_path / "d.extxyz"
    write_dataset(path, frames, DatasetSettings({"pbesol": {"ecut_eV": 350}}))
    template = tmp_path / "card.template.md"
    template.write_text("n={n_structures} gaps={gap_counts} h={label_hours_total} s={label_seconds_median}\n"
                        "{gaps_by_sampling_and_T}\n")
    card = write_card(summarise(path, tmp_path), template, tmp_path / "README.md").read_text()
    assert card.startswith("n=6 gaps=gap_pbesol: 6 h=0.1 s=90\n")
    # counts stay integers, values get 3 decimals
    row = next(line for line in card.splitlines() if line.startswith("| phonon 300 K"))
    assert [c.strip() for c in row.strip("|").split("|")] == ["phonon 300 K", "6", "0.400", "0.000"]


def test_close_contacts_against_a_hand_built_pair():
    from ase import Atoms

    from capml.io.report import close_contacts

    far = bulk("Cu", cubic=True)  # nearest neighbours 2.55 Å
    far.info.update(structure_id="far")
    near = Atoms("AgBr", positions=[[0.1, 0, 0], [9.9, 0, 0]], cell=[10.0, 10.0, 10.0], pbc=True)
    near.info.update(structure_id="near", sampling="phonon", temperature=600.0)
    near.arrays["REF_forces"] = np.array([[31.5, 0, 0], [-31.5, 0, 0]])
    table = close_contacts([far, near], threshold_A=2.0)
    assert table["structure_id"].tolist() == ["near"]  # 0.2 Å across the periodic boundary
    assert table.loc[0, "pair"] == "Ag-Br" and abs(table.loc[0, "distance_A"] - 0.2) < 1e-9
    assert table.loc[0, "max_force_eV_A"] == 31.5
