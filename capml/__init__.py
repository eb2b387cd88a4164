"""capml: band gaps of anharmonic, chemically disordered semiconductors at first-principles accuracy."""

__version__ = "0.1.0"
