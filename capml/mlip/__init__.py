"""MACE fine-tuning with mace-torch's own trainer, its evaluation, and the MLIP calculator simulate uses."""
