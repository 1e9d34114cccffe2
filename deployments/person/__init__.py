"""Family ``person``: Disentangled Person Image Generation (foreground, background and pose as separate factors)."""
