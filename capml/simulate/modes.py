"""Stage 6: frozen Γ-phonon distortions at temperature T and the GNN gap change per mode.

Each Γ mode s of the relaxed supercell is frozen in at its thermal RMS amplitude. In mass-weighted
normal coordinates <Q_s²> = ħ(2n_s+1)/(2ω_s) with n_s the Bose occupation, so atom i moves by
u_i = ±Q_s e_s,i/√m_i; for a mode on atoms of one mass m this is the familiar sqrt(ħ(2n+1)/(2mω)).
ħ is taken in SI (J s) with masses in kg; the seed script converted ħ with 6.24e-18 instead of
1.602e-19 and its amplitudes came out 6.24x too large. The gap change is the even part
(Eg(+Q) + Eg(−Q))/2 − Eg(0), all distorted structures in one batched prediction.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # noqa: E402  (no pyplot: importing capml never switches a backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from ase import Atoms  # noqa: E402

from capml.phonons import gamma_modes, mode_amplitudes  # noqa: E402
from capml.simulate.gaps import GapModel  # noqa: E402


def mode_displacements(eigenvectors: np.ndarray, amplitudes: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """(n_modes, n_atoms, 3) displacements in Å: column s of ``eigenvectors`` scaled by Q_s/√m_i."""
    n = len(masses)
    e = eigenvectors.T.reshape(-1, n, 3)
    return e * amplitudes[:, None, None] / np.sqrt(masses)[None, :, None]


def species_character(eigenvectors: np.ndarray, symbols: list[str]) -> pd.DataFrame:
    """Fraction of each mode's (unit) eigenvector weight on each species; rows sum to 1."""
    n = len(symbols)
    weight = (eigenvectors.T.reshape(-1, n, 3) ** 2).sum(-1)  # (n_modes, n_atoms)
    species = sorted(set(symbols), key=symbols.index)
    return pd.DataFrame({s: weight[:, np.array(symbols) == s].sum(1) for s in species})


def frozen_modes(atoms: Atoms, force_constants: np.ndarray, model: GapModel, temperature_K: float,
                 acoustic_THz: float = 0.05) -> pd.DataFrame:
    """Gap change per Γ mode frozen in at its thermal amplitude at ``temperature_K``."""
    frequencies, vectors = gamma_modes(atoms, force_constants)
    keep = np.flatnonzero(np.abs(frequencies) > acoustic_THz)
    amplitudes = mode_amplitudes(frequencies[keep], temperature_K)
    displacements = mode_displacements(vectors[:, keep], amplitudes, atoms.get_masses())
    structures = [atoms.copy()]
    for u in displacements:
        for sign in (1, -1):
            distorted = atoms.copy()
            distorted.positions += sign * u
            structures.append(distorted)
    gaps = np.asarray(model.predict(structures), float)
    plus, minus = gaps[1::2], gaps[2::2]
    character = species_character(vectors[:, keep], atoms.get_chemical_symbols())
    table = pd.DataFrame({
        "mode": keep, "frequency_THz": frequencies[keep], "imaginary": frequencies[keep] < 0,
        "amplitude_A_sqrt_amu": amplitudes, "max_displacement_A": np.linalg.norm(displacements, axis=-1).max(1),
        "gap_plus_eV": plus, "gap_minus_eV": minus, "delta_gap_eV": 0.5 * (plus + minus) - gaps[0],
    })
    table["dominant_species"] = character.idxmax(axis=1).to_numpy()
    table = pd.concat([table, character.add_prefix("weight_")], axis=1)
    table.attrs["gap_0_eV"] = float(gaps[0])
    return table


def plot_modes(table: pd.DataFrame, path: Path, title: str = "") -> None:
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for i, (species, group) in enumerate(table.groupby("dominant_species")):
        ax.scatter(group["frequency_THz"], 1000 * group["delta_gap_eV"], s=14, color=f"C{i}",
                   label=f"{species}-dominated")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("Γ-mode frequency (THz; imaginary < 0)")
    ax.set_ylabel("ΔEg per frozen mode (meV)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
