import numpy as np
import pytest

from capml.errors import InputError
from capml.labels.bandgap import band_gap, normalised_occupations


def test_indirect_gap_and_metal():
    eigs = np.array([[[-1.0, 0.5, 2.0], [-0.8, 0.2, 1.5]]])  # 1 spin, 2 k-points, 3 bands
    occs = np.array([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    gap = band_gap(eigs, occs)
    assert gap.gap_eV == pytest.approx(0.2 - (-0.8))
    assert (gap.vbm_k, gap.cbm_k) == (1, 1) and gap.direct
    metal = band_gap(eigs, np.array([[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]]))
    assert metal.gap_eV == 0.0  # filled 0.5 at k0 above the empty 0.2 at k1


def test_occupations_scaled_by_weights_are_normalised():
    occs = np.array([[[0.25, 0.25, 1e-9], [0.5, 0.49, 0.0]]])
    assert normalised_occupations(occs)[0, 0].tolist() == pytest.approx([1, 1, 4e-9])


def test_shapes_checked():
    with pytest.raises(InputError, match="shape"):
        band_gap(np.zeros((2, 3)), np.zeros((2, 3)))


def test_aufbau_fills_the_lowest_states_after_a_swap():
    # the bundled 600 K cell phonon_k2of8_d2_T600_s1 (GPAW, Γ): bands 183/184 share the Fermi level in PBEsol
    # (occupations 0.624/0.376); the non-self-consistent HSE06 shifts are -0.098/-0.289 eV, which swaps them
    hse = np.array([[[4.659, 5.3679, 5.1873, 6.4601]]])
    occs = np.array([[[1.0, 0.624, 0.376, 0.0]]])
    assert band_gap(hse, occs).gap_eV == 0.0  # the filled state is now above the empty one
    assert band_gap(hse, occs, aufbau=True).gap_eV == pytest.approx(5.3679 - 5.1873)
    # without a swap both rules agree, at every k-point
    eigs = np.array([[[-1.0, 0.5, 2.0], [-0.8, 0.2, 1.5]]])
    one = np.array([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    assert band_gap(eigs, one, aufbau=True).gap_eV == band_gap(eigs, one).gap_eV == pytest.approx(1.0)
