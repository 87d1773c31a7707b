"""Training and evaluation engine: run configs, the trainer loop, checkpoints, metrics and validators."""
