"""The `warp` family: pose-guided person image synthesis with the Soft-Gated Warping-GAN."""
