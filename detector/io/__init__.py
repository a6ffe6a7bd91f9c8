"""Everything with files: images, checkpoints, detection files, datasets (see docs/DESIGN.md)."""
