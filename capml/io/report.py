"""Summaries of a dataset file for its data card: counts per composition, temperature and sampling, label
wall time, and gap histograms per fidelity.

    python -m capml.io.report data/<system>/dataset.extxyz --system <system> [--out DIR] [--card data/<system>/README.md]

``--card`` writes the data card: a Markdown template (settings, commands, notes) filled in with the counts,
wall times and plots of the dataset as it is now, so the card is regenerated with every commit of a growing set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure  # noqa: E402  (no pyplot: importing capml never switches a backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from capml.io.contract import GAP_PREFIX, gap_keys, read_dataset, read_settings  # noqa: E402
from capml.io.extxyz import read_failures  # noqa: E402
from capml.io.jsonio import write_json  # noqa: E402


def dataset_table(frames) -> pd.DataFrame:
    """One row per labelled frame (from :func:`capml.io.contract.read_dataset`)."""
    rows = []
    for atoms in frames:
        row = {key: atoms.info.get(key) for key in ("structure_id", "config_id", "x", "temperature", "sampling")}
        row["n_atoms"] = len(atoms)
        row["energy_per_atom_eV"] = atoms.info["REF_energy"] / len(atoms)
        row["max_force_eV_A"] = float(np.abs(atoms.arrays["REF_forces"]).max())
        row["label_seconds"] = atoms.info.get("label_seconds", np.nan)
        for key in gap_keys([atoms]):
            row[key] = atoms.info[key]
        rows.append(row)
    return pd.DataFrame(rows)


def gap_histograms(table: pd.DataFrame, out: Path) -> Path:
    fidelities = [c for c in table.columns if c.startswith(GAP_PREFIX)]
    fig = Figure(figsize=(4.5 * len(fidelities), 3.5))
    axes = fig.subplots(1, len(fidelities), squeeze=False)
    for ax, key in zip(axes[0], fidelities):
        values = table[key].dropna()
        ax.hist(values, bins=20, color="tab:blue" if "pbesol" in key else "tab:red", alpha=0.8)
        ax.set_xlabel(f"{key} (eV)")
        ax.set_ylabel("structures")
        ax.set_title(f"{key}: n={len(values)}, mean {values.mean():.3f} eV")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def gap_vs_composition(table: pd.DataFrame, out: Path, x_label: str = "x") -> Path:
    fidelities = [c for c in table.columns if c.startswith(GAP_PREFIX)]
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for key in fidelities:
        sub = table.dropna(subset=[key])
        ax.scatter(sub["x"], sub[key], s=12, label=key, alpha=0.7)
    ax.set_xlabel(x_label)
    ax.set_ylabel("band gap (eV)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def close_contacts(frames, threshold_A: float = 2.0) -> pd.DataFrame:
    """Frames with two atoms closer than ``threshold_A`` (minimum image): the closest pair, its distance and the
    frame's largest force component, closest first. Hot phonon samples of harmonically unstable cells can
    bring atoms this close; their labels are correct for the structure but far from equilibrium."""
    from capml.graphs.neighbour_list import periodic_neighbours

    rows = []
    for atoms in frames:
        i, j, _, d = periodic_neighbours(atoms, threshold_A, where=str(atoms.info.get("structure_id")))
        if len(d):
            k = int(np.argmin(d))
            symbols = atoms.get_chemical_symbols()
            forces = atoms.arrays.get("REF_forces")
            rows.append({"structure_id": atoms.info.get("structure_id"), "sampling": atoms.info.get("sampling"),
                         "temperature_K": atoms.info.get("temperature"),
                         "pair": "-".join(sorted((symbols[i[k]], symbols[j[k]]))), "distance_A": float(d[k]),
                         "max_force_eV_A": float(np.abs(forces).max()) if forces is not None else np.nan})
    columns = ["structure_id", "sampling", "temperature_K", "pair", "distance_A", "max_force_eV_A"]
    return pd.DataFrame(rows, columns=columns).sort_values("distance_A", ignore_index=True)


def summarise(path: str | Path, out_dir: str | Path, x_label: str = "x") -> dict:
    path, out_dir = Path(path), Path(out_dir)
    frames = read_dataset(path)
    table = dataset_table(frames)
    counts = table.pivot_table(index="x", columns=["sampling"], values="structure_id", aggfunc="count",
                               fill_value=0)
    phonon = table[table.sampling == "phonon"].pivot_table(index="x", columns="temperature", values="structure_id",
                                                           aggfunc="count", fill_value=0)
    summary = {
        "n_structures": len(table),
        "n_failed": len(read_failures(path)),
        "gap_counts": {c: int(table[c].notna().sum()) for c in table.columns if c.startswith(GAP_PREFIX)},
        "label_hours_total": float(np.nansum(table["label_seconds"]) / 3600),
        "label_seconds_median": float(np.nanmedian(table["label_seconds"])),
        "settings": read_settings(path).fidelities,
        "counts_by_x_and_sampling": counts.to_dict(),
        "phonon_counts_by_x_and_T": phonon.to_dict(),
        "histogram": str(gap_histograms(table, out_dir / "gap_histograms.png")),
        "gap_vs_x": str(gap_vs_composition(table, out_dir / "gap_vs_x.png", x_label)),
    }
    contacts = close_contacts(frames)
    summary["n_close_contacts"] = len(contacts)
    summary["tables"] = {"by_x_and_sampling": counts.to_markdown(), "phonon_by_x_and_T": phonon.to_markdown(),
                         "gaps_by_sampling_and_T": markdown_counts_and_values(gap_statistics(table)),
                         "close_contacts": contacts.to_markdown(index=False, floatfmt=".2f") if len(contacts)
                         else "(none)"}
    table.to_csv(out_dir / "dataset_summary.csv", index=False)
    write_json((out_dir / "dataset_summary.json"), summary, indent=1)
    print(counts.to_markdown())
    print()
    print(phonon.to_markdown())
    return summary


def gap_statistics(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread of every gap fidelity per sampling kind and temperature (eV)."""
    fidelities = [c for c in table.columns if c.startswith(GAP_PREFIX)]
    stats = table.groupby(["sampling", "temperature"])[fidelities].agg(["count", "mean", "std"])
    stats.columns = [f"{key} {stat}" for key, stat in stats.columns]
    stats.index = [f"{sampling} {temperature:g} K" for sampling, temperature in stats.index]
    return stats


def markdown_counts_and_values(stats: pd.DataFrame) -> str:
    """Counts as integers, everything else to 3 decimals (tabulate takes one format per column)."""
    formats = [""] + [".0f" if c.endswith("count") else ".3f" for c in stats.columns]
    return stats.to_markdown(floatfmt=formats)


def extra_sets_table(paths) -> str:
    """One Markdown row per further dataset file (relaxed configurations, MD snapshots): frames, fidelities, kind
    and temperature counts, mean gaps and label time."""
    rows = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        table = dataset_table(read_dataset(path))
        gaps = [c for c in table.columns if c.startswith(GAP_PREFIX)]
        kinds = ", ".join(f"{k} {n}" for k, n in table["sampling"].fillna("?").value_counts().sort_index().items())
        temps = ", ".join(f"{t:g} K: {n}" for t, n in table["temperature"].dropna().value_counts().sort_index().items())
        rows.append({"file": f"`{path.name}`", "frames": len(table),
                     **{f"{g} (n, mean eV)": f"{table[g].notna().sum()}, {table[g].mean():.3f}" for g in gaps},
                     "kind": kinds, "temperatures": temps or "-",
                     "label core-hours": f"{np.nansum(table['label_seconds']) / 3600:.1f}"})
    return pd.DataFrame(rows).fillna("-").to_markdown(index=False) if rows else "(none)"


def write_card(summary: dict, template: str | Path, card: str | Path, extra: list | None = None) -> Path:
    """Fill ``template`` (``{name}`` fields from :func:`summarise`) and write the data card ``card``."""
    gaps = summary["gap_counts"]
    fields = {
        "n_structures": summary["n_structures"],
        "n_failed": summary["n_failed"],
        "gap_counts": ", ".join(f"{k}: {v}" for k, v in sorted(gaps.items())),
        "label_hours_total": f"{summary['label_hours_total']:.1f}",
        "label_seconds_median": f"{summary['label_seconds_median']:.0f}",
        "n_close_contacts": summary.get("n_close_contacts", 0),
        "extra_sets": extra_sets_table(extra or []),
        **summary["tables"],
    }
    card = Path(card)
    card.write_text(Path(template).read_text().format(**fields))
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--system", default=None, help="the system (conf/system/<name>.yaml or a YAML path) whose "
                        "composition axis labels the plots (default: plain x)")
    parser.add_argument("--out", default=None, help="folder for the plots and tables (default: next to dataset)")
    parser.add_argument("--card", default=None, help="write the data card here (Markdown)")
    parser.add_argument("--template", default=None, help="card template (default: <card folder>/card.template.md)")
    parser.add_argument("--extra", nargs="*", default=[], help="further dataset files summarised in the card's "
                        "{extra_sets} table (relaxed configurations, MD snapshots)")
    args = parser.parse_args(argv)
    x_label = "x"
    if args.system:
        from capml.structures.system import load_system

        x_label = load_system(args.system).x_label
    summary = summarise(args.dataset, args.out or Path(args.dataset).parent, x_label)
    if args.card:
        template = args.template or Path(args.card).parent / "card.template.md"
        print(f"data card: {write_card(summary, template, args.card, args.extra)}")


if __name__ == "__main__":
    main()
