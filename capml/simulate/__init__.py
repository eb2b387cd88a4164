"""Simulation stages driven by simulate.py."""
