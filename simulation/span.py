"""The run's span and its train/test cut: the generator's configured days, or an ingested trace's own.

A generated run spans `workload.start_date` + `workload.days` (the generator writes exactly
that). An ingested trace's span is the trace's, whatever its length (MovieLens latest-small:
22 years): the ingest writes it to `span.json` in the run directory, and the cut is taken from
there. There is no fallback to the configured days: a run directory without `span.json` is
re-ingested, and a test period (`split.test_days`, or `split.test_fraction` of the span) that
leaves no training day is an error.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass

from simulation.config import ExperimentConfig, SplitConfig
from simulation.errors import ConfigError, RunDirError
from simulation.rundir import RunDir

GENERATOR = "generator"


@dataclass(frozen=True)
class Span:
    """First day (YYYY-MM-DD), whole days covered, and what produced the events."""

    start_date: str
    days: int
    trace: str


def write_span(run: RunDir, span: Span) -> None:
    """Record an ingested trace's span beside its logs."""
    run.create()
    run.span.write_text(json.dumps(asdict(span), indent=2) + "\n")


def run_span(cfg: ExperimentConfig, run: RunDir) -> Span:
    """The span of the run's events: configured for the generator, span.json for an ingested trace."""
    if cfg.workload.source == "generate":
        return Span(cfg.workload.start_date, cfg.workload.days, GENERATOR)
    if not run.span.is_file():
        raise RunDirError(f"{run.span} is missing: the ingested trace's span is recorded by the ingest; "
                          f"run `edgecache ingest` (or `edgecache generate` with workload.source = 'ingest') "
                          f"on {run.root} first")
    try:
        raw = json.loads(run.span.read_text())
        return Span(str(raw["start_date"]), int(raw["days"]), str(raw["trace"]))
    except (ValueError, KeyError, TypeError) as e:
        raise RunDirError(f"{run.span} is unreadable ({e}); re-run the ingest on {run.root}") from e


def check_test_days(split: SplitConfig, span: Span) -> int:
    """The test period's days, which must leave at least one training day inside the span."""
    test_days = split.days_in(span.days)
    if test_days >= span.days:
        raise ConfigError(f"{split.key_for(span.days)} does not fit the {span.trace} span of "
                          f"{span.days} days from {span.start_date}: it must leave a training day (e.g. the "
                          f"last 20%: --set split.test_days={max(1, span.days // 5)} or --set split.test_fraction=0.2)")
    return test_days


def time_cut(cfg: ExperimentConfig, run: RunDir) -> str:
    """The train/test cut, 'YYYY-MM-DD HH:MM:SS': span start + (span days - test days) days, the
    test days being split.test_days or split.test_fraction of the span."""
    span = run_span(cfg, run)
    test_days = check_test_days(cfg.split, span)
    day = datetime.date.fromisoformat(span.start_date) + datetime.timedelta(days=span.days - test_days)
    return f"{day.isoformat()} 00:00:00"


def cut_seconds(cut: str) -> int:
    """A cut 'YYYY-MM-DD HH:MM:SS' as Unix seconds, read as UTC (the feature job's session time zone)."""
    return int(datetime.datetime.fromisoformat(cut).replace(tzinfo=datetime.UTC).timestamp())
