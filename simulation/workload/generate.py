"""The generator: catalog + users (Faker names) + per-edge viewing logs (numpy), chunked.

Chunks cover consecutive hours; a session may run past its chunk's last hour, so those
events wait for the next chunk and every edge's files stay in time order across parts.
Memory is bounded by `workload.chunk_events` (plus the small spill), however many events
are asked for. Same seed and config give byte-identical files.
"""

from __future__ import annotations

import datetime
import logging
import shutil
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edge_nodes.devices import DEVICES
from simulation.config import ExperimentConfig
from simulation.rundir import RunDir
from simulation.workload.catalog import build_catalog
from simulation.workload.dirty import (
    JSONL_KINDS,
    PARQUET_KINDS,
    dirty_table,
    dirty_target,
    make_dirty,
    render_dirty_jsonl,
)
from simulation.workload.events import EventGenerator, Events, hour_weights, plan_chunks
from simulation.workload.logwriter import Lookups, PartWriter, render_jsonl
from simulation.workload.population import build_population, edge_ids
from simulation.workload.stats import WorkloadStats

log = logging.getLogger(__name__)


def generate(cfg: ExperimentConfig, run: RunDir) -> dict[str, Any]:
    """Write catalog.parquet, users.parquet and logs/edge=<id>/part-*.{jsonl,parquet}; return stats."""
    w = cfg.workload
    s_cat, s_pop, s_ev, s_dirty = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.run.seed).spawn(4))
    catalog = build_catalog(w.items, w.days, zipf_s=w.zipf_s, series_fraction=w.series_fraction,
                            new_release_fraction=w.new_release_fraction, rng=s_cat, faker_seed=cfg.run.seed)
    edges = edge_ids(w.edges)
    pop = build_population(catalog, w.users, w.edges, alpha=w.noniid_alpha, rng=s_pop, faker_seed=cfg.run.seed)
    run.create()
    pq.write_table(catalog.to_table(), run.catalog)
    pq.write_table(pop.to_table(), run.users)
    if run.logs.exists():
        shutil.rmtree(run.logs)  # stale parts of an earlier run would mix with this one

    start = datetime.date.fromisoformat(w.start_date)
    kinds = JSONL_KINDS if w.format == "jsonl" else PARQUET_KINDS
    stats = WorkloadStats(edges, len(catalog), (w.days - cfg.split.days_in(w.days)) * 86400, kinds)
    sink = _Sink(Lookups(pop.user_id, catalog.content_id, DEVICES, edges, w.start_date, w.days),
                 PartWriter(run.logs, edges, w.format), stats, kinds, len(catalog), s_dirty)
    gen = EventGenerator(catalog, pop, binge_prob=w.binge_prob, days=w.days, rng=s_ev)
    chunks = plan_chunks(w.events, hour_weights(w.days, start.weekday()), w.chunk_events, s_ev)
    total_dirty = int(round(w.dirty_fraction * w.events))
    pending: Events | None = None
    for i, (lo, hi, counts) in enumerate(chunks):
        ev = gen.chunk(lo, counts)
        ev = Events.concat([pending, ev]) if pending is not None else ev
        ev = ev.take(np.lexsort((ev.ts, ev.edge)))
        ready = ev.ts < hi * 3600 if i < len(chunks) - 1 else np.ones(len(ev.ts), bool)
        pending = ev.take(~ready)
        sink.write(ev.take(ready), total_dirty, w.events)
        log.info("generate: chunk %d/%d, %d events written", i + 1, len(chunks), stats.counts.sum())
    summary = stats.summary()
    summary.update(source="generate", users=w.users, items=len(catalog), edges=w.edges, format=w.format,
                   parts=sum(sink.writer.parts.values()), start_date=w.start_date, days=w.days)
    return summary


class _Sink:
    """Renders a time-ordered chunk plus its dirty copies and writes one part per edge."""

    def __init__(self, lookups: Lookups, writer: PartWriter, stats: WorkloadStats,
                 kinds: tuple[str, ...], n_items: int, rng: np.random.Generator) -> None:
        self.lookups, self.writer, self.stats, self.kinds = lookups, writer, stats, kinds
        self.n_items, self.rng = n_items, rng
        self.emitted = self.injected = 0

    def write(self, ev: Events, total_dirty: int, total_events: int) -> None:
        if len(ev.ts) == 0:
            return
        self.stats.add(ev.edge, ev.item, ev.ts, ev.cont)
        self.emitted += len(ev.ts)
        cols = self.lookups.columns(ev.user, ev.device, ev.item, ev.duration, ev.ts, ev.edge)
        k = dirty_target(total_dirty, self.emitted, total_events, self.injected)
        dirty = make_dirty(cols, k, self.kinds, self.injected, self.n_items, self.rng)
        self.injected += len(dirty.src)
        self.stats.add_dirty(ev.edge[dirty.src], dirty.kind)
        # Each dirty copy goes right after its source row: same edge, same place in time.
        order = np.argsort(np.concatenate([2 * np.arange(len(ev.ts)), 2 * dirty.src + 1]), kind="stable")
        edge = np.concatenate([ev.edge, ev.edge[dirty.src]])[order]
        if self.writer.fmt == "jsonl":
            lines = pa.concat_arrays([render_jsonl(cols), render_dirty_jsonl(dirty, self.kinds)])
            self.writer.write_lines(edge, lines.take(pa.array(order)))
        else:
            cols["duration"] = pa.array(ev.duration.astype(np.int64))
            table = pa.concat_tables([pa.table(cols), dirty_table(dirty)])
            self.writer.write_table(edge, table.take(pa.array(order)))
