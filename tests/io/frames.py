"""A small labelled frame for the tests of capml.io."""

import numpy as np
from ase.build import bulk


def labelled(i, config="c0"):
    atoms = bulk("Cu", cubic=True)
    atoms.info.update(REF_energy=-1.0 * i, REF_stress=np.eye(3) * 0.01, gap_pbesol=0.5, structure_id=f"s{i}",
                      config_id=config)
    atoms.arrays["REF_forces"] = np.full((4, 3), 0.1 * i)
    return atoms
