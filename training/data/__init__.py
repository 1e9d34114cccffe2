"""Training data: procedural images with known part layouts."""
