"""The `edgecache` command: parses, wires and calls; the logic lives in importable modules."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from monitoring.exporter import serve_metrics
from simulation import interrupts
from simulation.config import ExperimentConfig, load_config
from simulation.errors import DOMAIN_ERRORS
from simulation.pipeline import STAGE_ORDER, StageContext, run_pipeline, run_stage
from simulation.rundir import RunDir

app = typer.Typer(
    name="edgecache",
    help="Edge-based predictive caching with federated learning: generate a workload, build "
         "Spark features, train with Flower, replay every cache policy, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="experiments/<name>.toml")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="run directory (default runs/<run.name>)")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="override a config key: --set section.key=value (repeatable)")]


def _context(config: Path | None, out: Path | None, overrides: list[str] | None,
             extra: list[str] | None = None) -> StageContext:
    cfg: ExperimentConfig = load_config(config, [*(overrides or []), *(extra or [])])
    run = RunDir.for_config(cfg, out).create()
    results: dict[str, Any] = run.read_results() if run.results.exists() else {}
    results["config"] = cfg.public_dict()
    return StageContext(cfg=cfg, run=run, console=console, results=results)


@app.command()
def run(config: ConfigOpt = None, out: OutOpt = None, overrides: SetOpt = None,
        metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus metrics on this port")] = None,
        ) -> None:
    """Run the whole pipeline: workload, features, federated rounds, replay, report."""
    extra = [f"monitoring.metrics_port={metrics_port}"] if metrics_port is not None else []
    ctx = _context(config, out, overrides, extra)
    console.print(f"run directory: [bold]{ctx.run.root}")
    mon = ctx.cfg.monitoring
    with serve_metrics(mon.metrics_port, mon.metrics_addr, mon.linger_s):
        run_pipeline(ctx, STAGE_ORDER)
    console.print(f"results: {ctx.run.results}")


def _stage_config(config: Path | None, out: Path | None) -> Path | None:
    """One stage on an existing run directory reads, without --config, the config its earlier
    stages ran with (its config.toml), not the base config: `edgecache replay -o runs/x` after a
    MovieLens run must not replay with the default's history length."""
    if config is not None or out is None or not RunDir(out).config_file.is_file():
        return config
    console.print(f"config: {RunDir(out).config_file} (the run's own; --config to choose another)")
    return RunDir(out).config_file


def _single(stage: str) -> Any:
    def command(config: ConfigOpt = None, out: OutOpt = None, overrides: SetOpt = None) -> None:
        ctx = _context(_stage_config(config, out), out, overrides)
        ctx.run.save_config(ctx.cfg)
        run_stage(stage, ctx)
        console.print(f"{stage}: done -> {ctx.run.root}")
    command.__name__ = stage
    return command


app.command("generate", help="Generate the catalog, users and per-edge viewing logs.")(_single("generate"))
app.command("features", help="Validate logs and build per-edge features with Spark.")(_single("features"))
app.command("train", help="Train the federated model and the local-only/centralized baselines.")(
    _single("train"))
app.command("replay", help="Replay the test period through every cache policy.")(_single("replay"))


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory with results.json")]) -> None:
    """Regenerate report.html and report.md from results.json alone."""
    from simulation.report.run_report import write_report  # matplotlib loads only when a report is made

    html_path, md_path = write_report(run_dir)
    console.print(f"report: {html_path}\n        {md_path}")


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="two or more run directories")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="folder for compare.html (default: the first run's parent folder)")] = None,
) -> None:
    """Compare runs side by side: policies and per-edge deltas."""
    from simulation.report.compare import load_runs, print_comparison, write_compare_html

    runs = load_runs(run_dirs)
    print_comparison(runs, console)
    path = write_compare_html(runs, out or run_dirs[0].resolve().parent)
    console.print(f"compare page: {path}")


@app.command()
def sweep(config: Annotated[Path, typer.Option("--config", "-c", help="experiments/sweep_<name>.toml")],
          out: OutOpt = None, overrides: SetOpt = None) -> None:
    """Run every point of a sweep file and write one combined report (sweep.html, sweep.json)."""
    from simulation.sweep import load_sweep, run_sweep

    spec = load_sweep(config, overrides)
    result = run_sweep(spec, out, console)
    console.print(f"sweep: {result.html}\n       {result.json}")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="trace file or folder (MovieLens: the folder with ratings.csv or u.data)")],
    format: Annotated[str, typer.Option("--format", help="jsonl | csv | movielens")] = "jsonl",
    out: OutOpt = None, config: ConfigOpt = None, overrides: SetOpt = None,
    mapping: Annotated[list[str] | None, typer.Option(
        "--map", help="field mapping ours=theirs, comma-separated or repeated, e.g. "
                      "--map user_id=uid,content_id=item,timestamp=ts")] = None,
) -> None:
    """Bring a real trace in place of the generator (same run layout: logs per edge, catalog, users).

    jsonl/csv: fields user_id, content_id, timestamp (required), device, duration, edge_id
    (optional; no edge_id -> edge-NN = crc32(user_id) mod workload.edges). MovieLens latest
    and 20M/25M/32M (ratings.csv [+ movies.csv]) and 10M (ratings.dat [+ movies.dat]):
    edge-NN = crc32(str(userId)) mod workload.edges. MovieLens 100K (u.data + u.user [+ u.item])
    and 1M (ratings.dat + users.dat [+ movies.dat]): a US zip goes to edge-0<first digit> (ZIP
    region), any non-US or non-numeric code to edge-10. A rating is a "web" watch event of rating/5 x 100
    min. Malformed lines go to DIR/quarantine/ingest/ with a reason.
    """
    extra = ["workload.source=ingest", f"workload.ingest_path={json.dumps(str(path))}",
             f"workload.ingest_format={format}", f"workload.ingest_map={json.dumps(list(mapping or []))}"]
    ctx = _context(config, out, overrides, extra)
    ctx.run.save_config(ctx.cfg)
    run_stage("generate", ctx)  # writes span.json: later stages cut train/test from the trace's own span
    w = ctx.results["workload"]
    console.print(f"ingest: {w['events']:,} events, {w['ingest_quarantined']:,} lines quarantined "
                  f"({ctx.run.quarantine / 'ingest'}) -> {ctx.run.root}")


def _say(line: str) -> None:
    console.print(line, style="red", markup=False, highlight=False)


def main() -> None:
    """Console-script entry: one-line errors for the errors we raise on purpose, and for signals."""
    # Our packages log progress at INFO; libraries (py4j, Ray, alembic, ...) only warnings.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in ("simulation", "edge_nodes", "aggregator", "spark_features", "monitoring"):
        logging.getLogger(ours).setLevel(logging.INFO)
    interrupts.install(_say)
    try:
        app()
    except DOMAIN_ERRORS as e:
        console.print(f"error: {e}", markup=False, highlight=False, style="red")
        sys.exit(2)
    except (interrupts.Interrupted, KeyboardInterrupt) as e:
        signum, stage = (e.signum, e.stage) if isinstance(e, interrupts.Interrupted) else \
            (signal.SIGINT, interrupts.current_stage())
        interrupts.say_once(_say, signum, stage)
        # End now: leftovers killed, and no wait for threads a library left running (Ray's start-up).
        interrupts.end_descendants()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(interrupts.EXIT_CODES[signal.Signals(signum)])
    finally:
        interrupts.end_descendants()  # nothing a run started outlives it


if __name__ == "__main__":
    main()
