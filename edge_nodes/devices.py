"""The device vocabulary of the event contract: one tuple; a device's index is its position.

Spark encodes `device_idx` with it (training examples and the replay's test stream alike), the
generator draws devices from it, the model sizes its device embedding by it. Never reorder it:
device_idx values in existing run directories and checkpoints mean these positions.
"""

from __future__ import annotations

DEVICES: tuple[str, ...] = ("TV", "mobile", "tablet", "web", "console")
N_DEVICES = len(DEVICES)
