"""EMT that pauses after each calculation: lets a test kill a labelling run mid-way."""

import time

from ase.calculators.emt import EMT


class SlowEMT(EMT):
    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        time.sleep(0.3)
