"""Report sections other than the policy tables: configuration, workload, capacity curves,
static efficiency, failures and degraded spans, timings. Each builder reads only
results.json values and says "not in this run" when its key is absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from simulation.report import plots
from simulation.report.model import (
    Block,
    Details,
    Figure,
    Note,
    Section,
    Table,
    fmt_int,
    fmt_ratio,
    fmt_seconds,
    fmt_value,
    is_number,
    not_in_run,
)

KEY_SETTINGS = (
    ("run", "name"), ("run", "seed"), ("workload", "source"), ("workload", "edges"),
    ("workload", "users"), ("workload", "items"), ("workload", "events"), ("workload", "days"),
    ("workload", "noniid_alpha"), ("workload", "dirty_fraction"), ("workload", "ingest_path"),
    ("workload", "ingest_format"), ("split", "test_days"), ("split", "test_fraction"),
    ("features", "history_len"), ("features", "cooc_window"), ("features", "cooc_half_life_days"),
    ("federated", "engine"), ("federated", "strategy"), ("federated", "rounds"),
    ("federated", "local_epochs"), ("federated", "dp_noise"), ("cache", "capacity"),
    ("cache", "capacity_unit"), ("cache", "policies"),
)
# shown only for the source they configure (an ingested trace's size and span are its own)
ONLY_FOR = {"generate": ("ingest_path", "ingest_format"),
            "ingest": ("users", "items", "events", "days", "noniid_alpha", "dirty_fraction")}
WORKLOAD_KEYS = ("events", "users", "items", "edges", "train_events", "test_events")
STAGE_TIMINGS = ("generate_s", "features_s", "train_s", "replay_s", "report_s")


def trace_label(results: Mapping[str, Any]) -> str:
    """What the run's events came from: the generator, or the ingested trace by name."""
    w: Mapping[str, Any] = results.get("workload") or {}
    cw: Mapping[str, Any] = (results.get("config") or {}).get("workload") or {}
    if (w.get("source") or cw.get("source")) != "ingest":
        return "generator"
    return f"ingested trace {w.get('trace') or cw.get('ingest_path') or '(unnamed)'}"


def config_section(results: Mapping[str, Any]) -> Section:
    """Key settings up front, the full resolved config folded away."""
    cfg = results.get("config")
    if not isinstance(cfg, Mapping) or not cfg:
        return Section("configuration", "Configuration", (not_in_run("The resolved configuration"),))
    hidden = ONLY_FOR.get(str((cfg.get("workload") or {}).get("source", "generate")), ())
    key_rows = tuple((f"{s}.{k}", fmt_value(cfg[s][k])) for s, k in KEY_SETTINGS
                     if isinstance(cfg.get(s), Mapping) and k in cfg[s] and not (s == "workload" and k in hidden))
    key_rows = (("trace", trace_label(results)), *key_rows)
    all_rows = tuple((f"{s}.{k}", fmt_value(v)) for s, values in cfg.items()
                     if isinstance(values, Mapping) for k, v in values.items())
    return Section("configuration", "Configuration", (
        Table(("setting", "value"), key_rows, "Key settings of this run."),
        Details(f"Full resolved configuration ({len(all_rows)} keys)", Table(("key", "value"), all_rows)),
    ))


def workload_section(results: Mapping[str, Any]) -> Section:
    """Events, users, items, edges, the train/test split and quarantined rows by reason."""
    w = results.get("workload")
    if not isinstance(w, Mapping) or not w:
        return Section("workload", "Workload", (not_in_run("The workload summary",
                                                           "The generate and features stages write it."),))
    extra = [k for k, v in w.items() if k not in WORKLOAD_KEYS and k != "quarantined" and is_number(v)]
    rows = [(k.replace("_", " "), fmt_int(w.get(k)) if k in w else "not recorded")
            for k in (*WORKLOAD_KEYS, *extra)]
    blocks: list[Block] = []
    q = w.get("quarantined")
    if isinstance(q, Mapping):
        rows.append(("quarantined rows", fmt_int(sum(v for v in q.values() if is_number(v)))))
        reasons = sorted(q.items(), key=lambda kv: (-(kv[1] if is_number(kv[1]) else 0), kv[0]))
        blocks.append(Table(("reason", "rows"), tuple((r, fmt_int(n)) for r, n in reasons),
                            "Rows quarantined by the features stage, by reason.")
                      if reasons else Note("No rows were quarantined."))
    elif is_number(q):
        rows.append(("quarantined rows", fmt_int(q)))
        blocks.append(Note("Quarantined rows by reason: not in this run (only the total was recorded)."))
    else:
        blocks.append(not_in_run("Quarantined rows"))
    return Section("workload", "Workload", (Table(("quantity", "value"), tuple(rows)), *blocks))


def capacity_section(results: Mapping[str, Any]) -> Section:
    """Hit ratio vs cache size, from a cache-size sweep; no curve without one."""
    sweep = results.get("capacity_sweep")
    if not isinstance(sweep, Mapping) or not sweep.get("capacities") or not sweep.get("policies"):
        return Section("capacity", "Hit ratio vs cache size", (Note(
            "Hit ratio vs cache size: not in this run. The curve needs a sweep over cache sizes: "
            "`edgecache sweep --config experiments/sweep_cache_size.toml`."),))
    caps = list(sweep["capacities"])
    series = {p: list(sweep["policies"][p]) for p in plots.order_policies(list(sweep["policies"]))}
    unit = str(sweep.get("unit", "items"))
    png = plots.curves(caps, series, f"cache capacity ({unit})", "hit ratio", "Hit ratio vs cache size")
    table = Table(("policy", *(f"{c:g}" if is_number(c) else str(c) for c in caps)),
                  tuple((p, *(fmt_ratio(v) for v in ys)) for p, ys in series.items()),
                  f"Hit ratio per cache capacity ({unit}).")
    return Section("capacity", "Hit ratio vs cache size", (
        Figure("capacity_sweep", png, "Hit ratio against cache capacity, one line per policy"), table))


def static_section(results: Mapping[str, Any]) -> Section:
    """The FPCC/GFPCC static cache efficiency: top-C items cached at the start of the test window."""
    se = results.get("static_efficiency")
    if not isinstance(se, Mapping) or not se:
        return Section("static-efficiency", "Static cache efficiency", (not_in_run("Static cache efficiency"),))
    scalars = {k: v for k, v in se.items() if not isinstance(v, Mapping)}
    note = scalars.pop("note") if isinstance(scalars.get("note"), str) else (
        "top-C items cached at the start of the test window and never updated")
    blocks: list[Block] = [f"Share of test requests served by a static cache, as in the FPCC/GFPCC papers: {note}."]
    if scalars:
        blocks.append(", ".join(f"{k} = {fmt_value(v)}" for k, v in scalars.items()))
    ranked = {k: v for k, v in se.items() if isinstance(v, Mapping) and ("overall" in v or "per_edge" in v)}
    other = {k: v for k, v in se.items() if isinstance(v, Mapping) and k not in ranked}
    if ranked:
        blocks.append(static_table(ranked))
    if other:
        blocks.append(mapping_table(other, "ranking"))
    return Section("static-efficiency", "Static cache efficiency", tuple(blocks))


def quality_section(results: Mapping[str, Any]) -> Section:
    """Prediction quality on the run's trace: each predictor's hit@K and NDCG@K, then hit@K per edge."""
    pq = results.get("prediction_quality")
    title = "Prediction quality"
    found = {n: v for n, v in pq.items() if isinstance(v, Mapping)} if isinstance(pq, Mapping) else {}
    if not isinstance(pq, Mapping) or not found:
        return Section("prediction-quality", title, (not_in_run(title),))
    k, trace = pq.get("k"), trace_label(results)
    overall = {n: v.get("overall") or {} for n, v in found.items()}
    ranked = Table(("predictor", f"hit@{k}", f"NDCG@{k}", "requests evaluated"),
                   tuple((n, fmt_ratio(o.get("hit_at_k")), fmt_ratio(o.get("ndcg_at_k")), fmt_int(o.get("requests")))
                         for n, o in overall.items()),
                   f"Trace: {trace}. hit@{k} and NDCG@{k} against the same user's next request in the test period.")
    models = {n: {"overall": {"hit_ratio": o.get("hit_at_k")},
                  "per_edge": {e: {"hit_ratio": s.get("hit_at_k")} for e, s in (v.get("per_edge") or {}).items()}}
              for (n, v), o in zip(found.items(), overall.values(), strict=True)}
    per_edge = static_table(models)
    per_edge = Table(("predictor", *per_edge.headers[1:]), per_edge.rows, f"hit@{k} per edge ({trace}).")
    return Section("prediction-quality", title, (f"{pq.get('note', '')}. {_refresh_note(results)}", ranked,
                                                 per_edge))


def _refresh_note(results: Mapping[str, Any]) -> str:
    """How the federated co-occurrence counts that itemcf (and side-information models) read were kept."""
    r = results.get("analytics_refresh")
    if not isinstance(r, Mapping) or not r:
        return ""
    cfg = results.get("config")
    features = cfg.get("features", {}) if isinstance(cfg, Mapping) else {}
    half_life = features.get("cooc_half_life_days", 0.0) if isinstance(features, Mapping) else 0.0
    aged = (f" Each count was aged with a half-life of {half_life:g} days"
            if is_number(half_life) and float(half_life) > 0 else "")
    every = r.get("every_days")
    if r.get("status") == "ok" and is_number(every):
        days = "day" if every == 1 else f"{every:g} days"
        return (f"The co-occurrence counts were re-summed every {days} of the test "
                f"period ({fmt_int(r.get('refreshes'))} refreshes; each request read only refreshes before it); "
                f"the models' weights stayed those trained before the cut."
                + (f"{aged}, re-aged at every refresh." if aged else ""))
    return f"The co-occurrence counts stayed as at the cut ({fmt_value(r.get('status'))}).{aged and aged + '.'}"


def _hit_of(v: Any) -> Any:
    return v.get("hit_ratio") if isinstance(v, Mapping) else v


def static_table(rankings: Mapping[str, Mapping[str, Any]]) -> Table:
    """Static hit ratio per ranking (rows), over all edges and per edge (columns)."""
    edges = sorted({e for r in rankings.values() for e in (r.get("per_edge") or {})})
    rows = tuple((name, fmt_ratio(_hit_of(r.get("overall"))),
                  *(fmt_ratio(_hit_of((r.get("per_edge") or {}).get(e))) for e in edges))
                 for name, r in rankings.items())
    return Table(("ranking", "all edges", *edges), rows, "Static hit ratio of the top-C items of each ranking.")


def mapping_table(rows: Mapping[str, Mapping[str, Any]], first: str) -> Table:
    """Rows keyed by name; nested dicts (e.g. per_edge) become one column per inner key."""
    flat = {name: _flatten(values) for name, values in rows.items()}
    cols = list(dict.fromkeys(k for values in flat.values() for k in values))
    return Table((first, *cols), tuple((name, *(_cell(v.get(c)) for c in cols)) for name, v in flat.items()))


def _flatten(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, Mapping):
            out.update({str(ik): iv for ik, iv in v.items()})
        else:
            out[k] = v
    return out


def _cell(v: Any) -> str:
    if is_number(v) and isinstance(v, float) and 0.0 <= v <= 1.0:
        return fmt_ratio(v)
    return fmt_int(v) if is_number(v) and float(v).is_integer() else fmt_value(v)


def records_table(records: Sequence[Mapping[str, Any]], caption: str = "") -> Table:
    """A list of flat dicts as a table, columns in order of first appearance."""
    cols = list(dict.fromkeys(k for r in records for k in r))
    return Table(tuple(cols), tuple(tuple(_cell(r.get(c)) for c in cols) for r in records), caption)


def timings_section(results: Mapping[str, Any]) -> Section:
    """Wall time per stage (timings vary run to run; everything else is seeded)."""
    t = results.get("timings")
    if not isinstance(t, Mapping) or not t:
        return Section("timings", "Timings by stage", (not_in_run("Timings"),))
    order = [k for k in STAGE_TIMINGS if k in t] + sorted(k for k in t if k not in STAGE_TIMINGS and k != "total_s")
    rows = [(k.removesuffix("_s"), fmt_seconds(t[k])) for k in order]
    if "total_s" in t:
        rows.append(("total", fmt_seconds(t["total_s"])))
    else:
        rows.append(("total (sum of stages)", fmt_seconds(sum(t[k] for k in order if is_number(t[k])))))
    return Section("timings", "Timings by stage", (Table(("stage", "wall time"), tuple(rows)),))


def summary_section(results: Mapping[str, Any], verdict: str) -> Section:
    """The headline: what ran and the one-sentence verdict."""
    cfg = results.get("config") or {}
    if not cfg:
        return Section("summary", "Summary", (verdict, not_in_run("The configuration")))
    w, f, c = cfg.get("workload") or {}, cfg.get("federated") or {}, cfg.get("cache") or {}
    seen: Mapping[str, Any] = results.get("workload") or {}
    events = (f"{fmt_int(w.get('events'))} generated events" if w.get("source", "generate") == "generate" else
              f"{fmt_int(seen.get('events'))} events of the {trace_label(results)} over {fmt_int(seen.get('days'))} days")
    facts = (f"Run {fmt_value((cfg.get('run') or {}).get('name'))}: {fmt_value(seen.get('edges', w.get('edges')))} "
             f"edges, {events}, {fmt_value(f.get('strategy'))} for "
             f"{fmt_value(f.get('rounds'))} rounds, cache capacity {fmt_value(c.get('capacity'))} "
             f"{fmt_value(c.get('capacity_unit'))}.")
    blocks: list[Block] = [facts, verdict]
    return Section("summary", "Summary", tuple(blocks))
