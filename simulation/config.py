"""Experiment configuration: TOML in `experiments/`, loaded once into frozen dataclasses.

The dataclass defaults are the base config; an experiment file overrides only what it
changes, and `--set section.key=value` overrides the file. Every key is checked: unknown
keys, wrong types and impossible values raise `ConfigError` naming the key and what is
allowed. Other packages never see this module: they are handed plain typed values.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from edge_nodes.cache.redis_conn import redact_url
from simulation.errors import ConfigError

REACTIVE_POLICIES = ("lru", "lfu", "arc", "s3fifo", "wtinylfu")
OFFLINE_POLICIES = ("belady", "belady_prefetch")  # offline bounds: the future known
PREDICTIVE_POLICIES = ("popularity", "markov_sql", "itemcf", "local_only", "federated", "centralized")
ALL_POLICIES = REACTIVE_POLICIES + OFFLINE_POLICIES + PREDICTIVE_POLICIES
STRATEGIES = (
    "fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm",
    "fedmedian", "fedtrimmedavg", "krum", "bulyan",
)
LOCAL_LAYERS = ("out_bias", "link_w", "out_emb")  # head arrays an edge may keep (edge_nodes/learning/kinds/base.py)
MODEL_KINDS = ("pooled", "gru4rec", "sasrec")  # edge_nodes/learning/kinds/


def _rule(*, choices: tuple[str, ...] | None = None, lo: float | None = None,
          hi: float | None = None, lo_open: bool = False, doc: str = "") -> dict[str, Any]:
    """Field metadata: allowed choices or a numeric range, checked on load."""
    return {"choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "doc": doc}


def _f(default: Any, **rule: Any) -> Any:
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=_rule(**rule))
    return field(default=default, metadata=_rule(**rule))


@dataclass(frozen=True)
class RunConfig:
    name: str = _f("default", doc="run directory name under out_dir")
    seed: int = _f(42, lo=0)
    out_dir: str = _f("runs", doc="parent folder of run directories")


@dataclass(frozen=True)
class WorkloadConfig:
    source: str = _f("generate", choices=("generate", "ingest"))
    edges: int = _f(8, lo=1, hi=1024)
    users: int = _f(4000, lo=1)
    items: int = _f(3000, lo=2)
    events: int = _f(1_000_000, lo=1)
    days: int = _f(28, lo=1, hi=3650, doc="generator: simulated days; an ingested trace's span is its own "
                   "(span.json), whatever its length")
    start_date: str = _f("2025-04-01", doc="generator: first simulated day, YYYY-MM-DD (ingest: the trace's)")
    noniid_alpha: float = _f(0.5, lo=0.0, lo_open=True, doc="Dirichlet concentration; lower = more different edges")
    zipf_s: float = _f(0.9, lo=0.0, doc="popularity skew exponent")
    series_fraction: float = _f(0.4, lo=0.0, hi=1.0, doc="share of catalog titles that are series")
    binge_prob: float = _f(0.7, lo=0.0, hi=1.0, doc="P(next episode) after an episode")
    new_release_fraction: float = _f(0.1, lo=0.0, hi=1.0, doc="share of titles released during the run")
    dirty_fraction: float = _f(0.0, lo=0.0, hi=0.5, doc="share of malformed rows injected")
    chunk_events: int = _f(500_000, lo=1000, doc="events generated and written per chunk")
    format: str = _f("jsonl", choices=("jsonl", "parquet"))
    ingest_path: str = _f("", doc="trace file or folder when source = 'ingest'")
    ingest_format: str = _f("jsonl", choices=("jsonl", "csv", "movielens"))
    ingest_map: tuple[str, ...] = _f((), doc="ingest column mapping, ours=theirs (e.g. user_id=uid)")


@dataclass(frozen=True)
class SplitConfig:
    test_days: int = _f(7, lo=1, doc="the test period: the span's last N days (the cut at 00:00)")
    test_fraction: float = _f(0.0, lo=0.0, hi=1.0, doc="> 0: the test period is the span's last "
                              "floor(fraction x span days) days (at least 1) in place of test_days, so one "
                              "experiment fits every release of a trace (0.2 = the last 20%)")

    def days_in(self, span_days: int) -> int:
        """Days of the test period in a span of `span_days` days."""
        if self.test_fraction > 0:
            return max(1, math.floor(span_days * self.test_fraction + 1e-9))
        return self.test_days

    def key_for(self, span_days: int) -> str:
        """The key that sets the test period, as error messages name it."""
        if self.test_fraction > 0:
            return f"split.test_fraction = {self.test_fraction:g} ({self.days_in(span_days)} days)"
        return f"split.test_days = {self.test_days}"


@dataclass(frozen=True)
class FeaturesConfig:
    spark_master: str = _f("local[*]")
    shuffle_partitions: int = _f(8, lo=1)
    driver_memory: str = _f("auto", doc="Spark driver heap (local mode: the whole job), e.g. \"6g\"; \"auto\" = ~3x "
                            "the bytes of logs, at least 2g, at most half the machine's memory (2g up to ~5M "
                            "events; 16M events need 6g); an OutOfMemoryError fails the stage at once")
    history_len: int = _f(5, lo=1, hi=64, doc="k: items of history per training example")
    session_gap_min: int = _f(30, lo=1)
    recency_half_life_days: float = _f(3.0, lo=0.0, lo_open=True)
    markov_top_n: int = _f(10, lo=1, hi=1000, doc="N: next items kept per previous item by markov_sql")
    cooc_window: int = _f(5, lo=1, hi=64, doc="W: previous items of a user each train event co-occurs with "
                          "(features/cooc, the itemcf policy; it scores with the last min(W, history_len))")
    cooc_decay: float = _f(0.6, lo=0.0, hi=1.0, lo_open=True, doc="weight of a co-occurrence at lag L "
                           "(1 = adjacent) is decay**(L-1); itemcf weighs its history the same way")
    cooc_symmetric: bool = _f(False, doc="also count next -> prev (order-free 'watched together'); "
                              "false suits binge series (synthetic default), true suited MovieLens")
    cooc_half_life_days: float = _f(0.0, lo=0.0, doc="> 0: a co-occurrence counts 2^-(its age in days / "
                                    "this), aged to the cut and, with federated.analytics_refresh_days, re-aged "
                                    "at every refresh (tastes drift over a long trace); 0 = plain counts")
    max_duration_min: float = _f(1440.0, lo=0.0, lo_open=True,
                                 doc="watch durations above this (minutes) are quarantined as absurd")
    pooled_tables: bool = _f(False, doc="also write every feature table pooled over every edge under "
                             "features/centralized/ (the centralized model pools the per-edge examples "
                             "itself and does not need them; as many more Spark writes, ~30% of the job)")


@dataclass(frozen=True)
class ModelConfig:
    kind: str = _f("pooled", choices=MODEL_KINDS, doc="history encoder: pooled (position-weighted sum), gru4rec "
                   "(a GRU), sasrec (2 blocks of causal self-attention); same head, loss and federation "
                   "(docs/federated.md 'Model kinds')")
    dim: int = _f(64, lo=2, hi=1024)
    lr: float = _f(0.01, lo=0.0, lo_open=True)
    batch_size: int = _f(512, lo=1)
    l2: float = _f(1e-6, lo=0.0)
    negatives: int = _f(512, lo=0, doc="negatives drawn per batch for the sampled softmax used in "
                        "training; 0 (or >= the catalog size) = full softmax")
    eval_fraction: float = _f(0.1, lo=0.0, hi=0.5)
    top_k: int = _f(10, lo=1)
    side_info: bool = _f(False, doc="the model also scores what the edge knows beyond the history window: "
                         "'already watched' over each user's whole history and the federated co-occurrence "
                         "counts (edge_nodes/learning/side.py; weights learned); off by default: on the default "
                         "experiment it gave +0.5 points of hit@10 for several times the round time; on "
                         "MovieLens latest-small federated hit@10 rose from 0.042 to ~0.049 (docs/federated.md)")
    recency_half_life_days: float = _f(0.0, lo=0.0, doc="training examples weigh 0.5 ** (age / half-life), "
                                       "age = days before the edge's last example (the test period is the "
                                       "future: on a trace spanning years, recent taste predicts it best); 0 = equal")


@dataclass(frozen=True)
class FederatedConfig:
    engine: str = _f("simulation", choices=("simulation", "deployment"))
    strategy: str = _f("fedavg", choices=STRATEGIES)
    rounds: int = _f(10, lo=1, hi=10_000)
    local_epochs: int = _f(1, lo=1)
    min_local_steps: int = _f(16, lo=0, doc="an edge's local epoch takes at least this many optimizer steps: an "
                              "edge with fewer than min_local_steps x model.batch_size examples trains with "
                              "batches of ceil(examples / min_local_steps) (at least 32); 0 = model.batch_size "
                              "everywhere. Small edges otherwise make a handful of steps per round and FedAvg "
                              "trails the centralized model (docs/federated.md 'Small edges'). The local-only "
                              "and centralized baselines keep model.batch_size")
    fraction_train: float = _f(1.0, lo=0.0, hi=1.0, lo_open=True)
    min_nodes: int = _f(2, lo=1)
    proximal_mu: float = _f(0.01, lo=0.0)
    server_lr: float = _f(0.1, lo=0.0, lo_open=True)
    server_momentum: float = _f(0.9, lo=0.0, hi=1.0, doc="fedavgm server momentum")
    trimmed_beta: float = _f(0.2, lo=0.0, hi=0.5)
    byzantine_nodes: int = _f(0, lo=0)
    dp_clip: float = _f(0.0, lo=0.0, doc="0 = no differential privacy")
    dp_noise: float = _f(0.0, lo=0.0, doc="noise multiplier z of the server-side DP wrapper; > 0 turns DP on")
    dp_delta: float = _f(0.0, lo=0.0, hi=0.5, doc="delta at which results.json states epsilon; 0 = 1/number of "
                         "users (the unit of privacy is one edge's update: docs/federated.md)")
    personalize_epochs: int = _f(0, lo=0)
    analytics_refresh_days: float = _f(1.0, lo=0.0, doc="re-sum the co-occurrence counts every N days of the "
                                       "test period (the analytics round re-run on what edges counted since; "
                                       "itemcf and side-information models read the last sum); 0 = frozen at the cut")
    local_layers: tuple[str, ...] = _f(("out_bias",), choices=LOCAL_LAYERS,
                                       doc="arrays each edge keeps and never sends (FedPer); [] = plain FedAvg")
    fail_edges: tuple[str, ...] = _f((), doc="edge ids that raise in fail_rounds (testing)")
    fail_rounds: tuple[int, ...] = _f(())
    resume: bool = _f(False)
    baselines: bool = _f(True, doc="also train local_only and centralized with the same budget")
    round_timeout_s: float = _f(600.0, lo=0.0, lo_open=True, doc="max seconds to wait for edge replies")
    connect_timeout_s: float = _f(120.0, lo=0.0, lo_open=True, doc="max seconds to wait for edges to connect")


@dataclass(frozen=True)
class CacheConfig:
    capacity: int = _f(100, lo=1)
    capacity_unit: str = _f("items", choices=("items", "bytes"))
    policies: tuple[str, ...] = _f(ALL_POLICIES, choices=ALL_POLICIES)
    prefetch_top_k: int = _f(3, lo=0, doc="predictions prefetched per request")
    prefetch_budget: float = _f(1.0, lo=0.0, doc="prefetched bytes / requested bytes cap")
    prediction_ttl_s: int = _f(3600, lo=1)
    origin_latency_ms: float = _f(80.0, lo=0.0)
    edge_latency_ms: float = _f(5.0, lo=0.0)
    prefetch_max_share: float = _f(0.5, lo=0.0, hi=1.0, doc="share of capacity unused prefetches may hold")
    prefetch_on_hit: bool = _f(True, doc="refresh predictions and prefetch after hits too")
    prefetch_min_demand: float = _f(0.0, lo=0.0, doc="edge demand a prediction needs to be prefetched; 0 = all")
    replay_batch: int = _f(2000, lo=1, doc="requests per server call in the replay")
    eviction: str = _f("demand", choices=("demand", "lru"),
                       doc="predictive policies' cache: demand (frequency + predicted demand) or lru")
    freq_half_life: float = _f(8000.0, lo=1.0, doc="demand: half-life of request counts, in edge requests (8000: "
                               "chosen on the validation draw, run.seed 7, among 2000, 4000, 8000 and 32000: "
                               "experiments/sweep_freq_half_life.toml)")
    pred_half_life: float = _f(300.0, lo=1.0, doc="demand: half-life of predicted demand, in edge requests")
    pred_weight: float = _f(30.0, lo=0.0, doc="demand: value of a prediction with probability 1, in requests")
    evict_sample: int = _f(8, lo=1, doc="demand: lowest-key entries whose exact value is compared per eviction")
    admission: bool = _f(True, doc="demand: cache a miss only if it beats the eviction victim")
    history_entries: int = _f(20000, lo=1, doc="demand: items whose decayed request count is remembered")
    prefetch_price: float = _f(0.8, lo=0.0, doc="demand: value-per-byte prefetching; a prediction is fetched only "
                               "when its expected requests before eviction (the edge's demand: the users' "
                               "calibrated probabilities) x its size exceed price x its fetch bytes; 0 = off "
                               "(0.8: the lowest price at which federated's origin bytes stayed <= W-TinyLFU's on "
                               "a validation draw of the default workload, run.seed 7: "
                               "experiments/sweep_prefetch_price.toml; never the scored seed's test period)")
    origin_shadow: str = _f("best", choices=REACTIVE_POLICIES + ("best", "none"),
                            doc="each edge simulates this reactive cache (libCacheSim, same capacity) on its own "
                            "requests and prefetches only while its origin bytes, prefetches included, stay <= "
                            "origin_ratio x the shadow's: no prediction costs more origin traffic than the cache "
                            "the edge would otherwise run. best: all five side by side, the least any of them paid "
                            "so far (chosen over wtinylfu on the validation draw, run.seed 7); none = no such limit "
                            "(docs/internals.md 'Shadow')")
    origin_ratio: float = _f(1.0, lo=0.0, lo_open=True, doc="origin bytes the edge may pay, as a multiple of "
                             "its origin_shadow's (> 1 trades origin traffic for hits)")
    price_gain: float = _f(30.0, lo=0.0, doc="demand, with an origin_shadow: the prefetch price follows the edge's "
                           "standing against its shadow, prefetch_price x exp(gain x (origin bytes - origin_ratio x "
                           "shadow's) / requested bytes), within e^-3..e^3 x; 0 = a fixed price. 30: chosen on the "
                           "validation draw (run.seed 7) among 0, 10, 30, 100 (docs/internals.md 'Shadow')")
    bound_lead: str = _f("user", choices=("user", "none"),
                         doc="belady_prefetch (offline bound): a request may be prefetched only after the same "
                         "user's previous request at the edge (user: when the live cache predicts it) or at any "
                         "time (none: just in time, every miss becomes a prefetched hit)")
    fit_side_scale: bool = _f(True, doc="per edge, scale a side-information model's learned side weights "
                              "(seen and co-occurrence) by the factor (0.5, 1, 2 or 4) with the most top-k hits on its held-out "
                              "slice (results.json policies.<name>.side_scale)")
    calibrate: bool = _f(True, doc="map predicted probabilities through an isotonic calibrator fitted on each "
                         "edge's held-out training slice (never the test period)")


@dataclass(frozen=True)
class RedisConfig:
    url: str = _f("", doc="empty = start an embedded server")
    isolation: str = _f("db", choices=("db", "prefix"))


@dataclass(frozen=True)
class MonitoringConfig:
    metrics_port: int = _f(0, lo=0, hi=65535, doc="0 = no exporter")
    metrics_addr: str = _f("127.0.0.1", doc="exporter listen address; loopback by default, \"0.0.0.0\" for "
                           "docker-compose's Prometheus (it scrapes through the host gateway)")
    linger_s: float = _f(10.0, lo=0.0, doc="keep the exporter up this long after a run for a last scrape")


@dataclass(frozen=True)
class ExperimentConfig:
    run: RunConfig = field(default_factory=RunConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    federated: FederatedConfig = field(default_factory=FederatedConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain, TOML/JSON-friendly view (the resolved config saved beside a run)."""
        return {f.name: _plain(dataclasses.asdict(getattr(self, f.name)))
                for f in dataclasses.fields(self)}

    def public_dict(self) -> dict[str, Any]:
        """`to_dict()` with secrets masked (the Redis password), for results.json and reports."""
        out = self.to_dict()
        out["redis"]["url"] = redact_url(self.redis.url)
        return out


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


SECTIONS: dict[str, type] = {name: cls for name, cls in get_type_hints(ExperimentConfig).items()}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment TOML (or the base config), apply `section.key=value` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found; pass an experiments/*.toml file")
        try:
            raw = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from e
    for item in overrides or []:
        section, key, value = _parse_override(item)
        raw.setdefault(section, {})[key] = value
    return build_config(raw)


def build_config(raw: dict[str, Any]) -> ExperimentConfig:
    """Turn a nested dict into a validated ExperimentConfig."""
    sections = {}
    for name, values in raw.items():
        if name == "sweep":
            raise ConfigError("this file has a [sweep] table: run it with `edgecache sweep --config FILE`")
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section [{name}]{_suggest(name, SECTIONS)}; "
                              f"allowed: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table of keys, got {values!r}")
        sections[name] = _build_section(name, SECTIONS[name], values)
    cfg = ExperimentConfig(**sections)
    _check_cross(cfg)
    return cfg


def _build_section(name: str, cls: type, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {name}.{key}{_suggest(key, fields)}; "
                              f"allowed keys in [{name}]: {', '.join(fields)}")
        out[key] = _check_value(f"{name}.{key}", hints[key], value, fields[key].metadata)
    return cls(**out)


def _check_value(key: str, hint: Any, value: Any, rule: Any) -> Any:
    origin = getattr(hint, "__origin__", None)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        elem = hint.__args__[0]
        return tuple(_check_value(key, elem, v, rule) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint in (int, float, str) and (not isinstance(value, hint) or isinstance(value, bool)):
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r} ({type(value).__name__})")
    choices, lo, hi = rule.get("choices"), rule.get("lo"), rule.get("hi")
    if choices and value not in choices:
        raise ConfigError(f"{key} = {value!r} is not allowed; choose from {', '.join(choices)}")
    if lo is not None and (value < lo or (rule.get("lo_open") and value == lo)):
        bound = f"> {lo}" if rule.get("lo_open") else f">= {lo}"
        raise ConfigError(f"{key} = {value!r} is out of range; it must be {bound}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key} = {value!r} is out of range; it must be <= {hi}")
    return value


def _check_cross(cfg: ExperimentConfig) -> None:
    """Checks that involve more than one key."""
    w = cfg.workload
    if w.source == "generate" and cfg.split.days_in(w.days) >= w.days:  # an ingested trace: on its span
        raise ConfigError(f"{cfg.split.key_for(w.days)} leaves no training period: it "
                          f"must be < workload.days = {w.days}")
    if cfg.cache.capacity_unit == "items" and w.source == "generate" and cfg.cache.capacity >= w.items:
        raise ConfigError(f"cache.capacity = {cfg.cache.capacity} items holds the whole catalog "
                          f"(workload.items = {w.items}); it must be < workload.items")
    if cfg.federated.min_nodes > w.edges:
        raise ConfigError(f"federated.min_nodes = {cfg.federated.min_nodes} exceeds "
                          f"workload.edges = {w.edges}")
    if w.source == "ingest" and not w.ingest_path:
        raise ConfigError("workload.source = 'ingest' needs workload.ingest_path")
    if len(cfg.federated.fail_rounds) and not cfg.federated.fail_edges:
        raise ConfigError("federated.fail_rounds is set but federated.fail_edges is empty")
    if cfg.features.driver_memory != "auto" and not re.fullmatch(r"\d+[kmgtKMGT]?", cfg.features.driver_memory):
        raise ConfigError(f"features.driver_memory = {cfg.features.driver_memory!r} must be \"auto\" or a JVM "
                          "size such as \"512m\" or \"6g\"")
    try:
        datetime.date.fromisoformat(w.start_date)
    except ValueError as e:
        raise ConfigError(f"workload.start_date = {w.start_date!r} must be YYYY-MM-DD") from e


def _parse_override(item: str) -> tuple[str, str, Any]:
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set cache.capacity=200")
    dotted, text = item.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # bare words are strings: --set federated.strategy=fedprox
    return section, key, value


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
