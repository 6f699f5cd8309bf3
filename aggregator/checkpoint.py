"""Checkpoints of the global model and the per-round record, under runs/<name>/models/.

    models/round-<n>.npz    global model after round n (edge_nodes.learning.model.save_params format)
    models/rounds.jsonl     one JSON object per finished round (metrics, failures)
    models/federated.json   the server's summary: status, error, dp, personalization
    models/local_layers/, models/federated/   edges' kept local layers and composed models (FedPer)

The checkpoint is written before the round's record, so a record never names a round whose
model is missing; resume truncates the record to the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from aggregator.errors import CheckpointError
from edge_nodes.errors import ModelFileError
from edge_nodes.learning.model import ModelSpec, Params, load_params, save_params

log = logging.getLogger(__name__)
ROUND_FILE = re.compile(r"^round-(\d+)\.npz$")


class CheckpointStore:
    """Reads and writes the global model and round records of one run."""

    def __init__(self, model_dir: str | Path) -> None:
        self.dir = Path(model_dir)

    def path(self, server_round: int) -> Path:
        return self.dir / f"round-{server_round}.npz"

    @property
    def rounds_file(self) -> Path:
        return self.dir / "rounds.jsonl"

    @property
    def summary_file(self) -> Path:
        return self.dir / "federated.json"

    def rounds_saved(self) -> list[int]:
        """Round numbers that have a checkpoint, ascending."""
        if not self.dir.is_dir():
            return []
        found = (ROUND_FILE.match(p.name) for p in self.dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def reset(self) -> None:
        """Start a fresh run: drop earlier checkpoints and records of this run directory."""
        for n in self.rounds_saved():
            self.path(n).unlink()
        for f in (self.rounds_file, self.summary_file):
            f.unlink(missing_ok=True)
        for sub in ("local_layers", "federated"):  # an earlier run's FedPer files would outlive it
            for f in (self.dir / sub).glob("*.npz"):
                f.unlink()

    def save(self, server_round: int, params: Params, spec: ModelSpec) -> Path:
        return save_params(self.path(server_round), params, spec)

    def latest(self, spec: ModelSpec) -> tuple[int, Params] | None:
        """The last checkpoint (round, params), checked against the model spec; None if none."""
        saved = self.rounds_saved()
        if not saved:
            return None
        try:
            params, found = load_params(self.path(saved[-1]))
        except ModelFileError as e:
            raise CheckpointError(f"cannot resume from {self.path(saved[-1])}: {e}; delete it to "
                                  "resume from the round before") from e
        if found != spec:
            raise CheckpointError(f"{self.path(saved[-1])} holds a model {found}, but this run needs "
                                  f"{spec}; set federated.resume = false to start over")
        return saved[-1], params

    def append_round(self, record: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.rounds_file.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read_rounds(self, up_to: int | None = None) -> list[dict[str, Any]]:
        """Round records in order, optionally only those up to round `up_to`."""
        if not self.rounds_file.is_file():
            return []
        rows = [json.loads(line) for line in self.rounds_file.read_text().splitlines() if line.strip()]
        return [r for r in rows if up_to is None or r["round"] <= up_to]

    def truncate_rounds(self, up_to: int) -> None:
        """Keep only the records of rounds that have a model to resume from."""
        rows = self.read_rounds(up_to)
        self.rounds_file.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.summary_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(self.summary_file)

    def read_summary(self) -> dict[str, Any]:
        if not self.summary_file.is_file():
            return {}
        return dict(json.loads(self.summary_file.read_text()))
