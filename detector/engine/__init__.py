"""Training and inference loops, devices and torch.distributed, the run folder (see docs/DESIGN.md)."""
