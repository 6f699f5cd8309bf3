"""The layout of a run directory: every stage reads and writes through these paths.

    runs/<name>/config.toml            resolved config (re-runnable with --config)
    runs/<name>/catalog.parquet        public catalog (the one table all edges share)
    runs/<name>/users.parquet
    runs/<name>/span.json              an ingested trace's own span (start_date, days, trace)
    runs/<name>/logs/edge=<id>/part-*.jsonl   raw per-edge logs
    runs/<name>/quarantine/edge_id=<id>/      rejected rows with a reason column
    runs/<name>/features/<table>/edge_id=<id>/ training examples, popularity, transitions
    runs/<name>/test/edge_id=<id>/            the untouched test stream for the replay
    runs/<name>/models/round-<n>.npz          global model checkpoints
    runs/<name>/results.json, report.html, report.md
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from simulation.config import ExperimentConfig
from simulation.errors import RunDirError


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def for_config(cls, cfg: ExperimentConfig, out: str | Path | None = None) -> RunDir:
        root = Path(out) if out else Path(cfg.run.out_dir) / cfg.run.name
        return cls(root)

    def create(self) -> RunDir:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.parquet"

    @property
    def users(self) -> Path:
        return self.root / "users.parquet"

    @property
    def span(self) -> Path:
        return self.root / "span.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def edge_logs(self, edge_id: str) -> Path:
        return self.logs / f"edge={edge_id}"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def test_stream(self) -> Path:
        return self.root / "test"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    def require(self, path: Path, made_by: str) -> Path:
        """Fail with the command that produces `path` when it is missing."""
        if not path.exists():
            raise RunDirError(f"{path} is missing; run `edgecache {made_by}` on {self.root} first")
        return path

    def save_config(self, cfg: ExperimentConfig) -> Path:
        """config.toml, re-runnable as is: a redis.url password stays, so the file is then 0600."""
        self.create()
        text = to_toml(cfg.to_dict())
        if cfg.public_dict() != cfg.to_dict():
            self.config_file.touch(mode=0o600)
            self.config_file.chmod(0o600)
        self.config_file.write_text(text)
        return self.config_file

    def read_results(self) -> dict[str, Any]:
        self.require(self.results, "run")
        return dict(json.loads(self.results.read_text()))

    def write_results(self, results: dict[str, Any]) -> Path:
        self.create()
        tmp = self.results.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
        tmp.replace(self.results)
        return self.results


def to_toml(sections: dict[str, dict[str, Any]]) -> str:
    """Write config sections as TOML, headed by a comment saying where they came from."""
    return "# resolved config written by edgecache; re-run with --config\n\n" + tomli_w.dumps(sections)
