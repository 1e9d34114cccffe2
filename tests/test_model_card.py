"""The shared pieces of the demo checkpoints' model cards."""

from training.model_card import arch_and_command, hardware


def test_arch_table_and_command_block():
    text = arch_and_command({"z_dim": 128, "channel_multipliers": [8, 4]}, "python -m training.x --out y")
    assert "| `z_dim` | 128 |\n| `channel_multipliers` | [8, 4] |" in text
    assert text.startswith("## Architecture (`arch` in model.json)")
    assert text.endswith("## How it was made\n\n```\npython -m training.x --out y\n```")


def test_hardware_names_the_threads():
    assert "2 torch threads" in hardware(2)
