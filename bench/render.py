#!/usr/bin/env python3
"""Turns the results of bench/compare.sh into a table, a chart and a section of docs/benchmarks.md.

    python3 bench/render.py target/bench/results-20261123T040000Z.jsonl
        [--doc docs/benchmarks.md] [--svg docs/benchmarks-compare.svg] [--no-write]
    python3 bench/render.py --selftest

The results file holds one JSON object per line: a `"type": "meta"` line (date, machine,
versions, the invocation) written by compare.sh, then one line per measurement: the JSON that
`corvus bench --json` printed, plus `broker`, `round`, `pinned`, `case` (the scenario's name in
compare.sh, e.g. `fanin-q0`), `command` and `exit_code`.

Medians are taken per (case, broker, pinned) over the runs that have the metric; a run that
failed (`ok: false`) still counts, and its cells are marked. Only the part of the Markdown file
between `<!-- compare:start -->` and `<!-- compare:end -->` is rewritten; the markers, under a
heading, are appended at the end of the file when missing.

Two helpers used by compare.sh (not meant to be run by hand):
    render.py meta --invocation ... [--version NAME=TEXT]... [--note TEXT]...
    render.py record --case C --broker B --round N --pinned 1 --exit-code RC --command CMD
                     --stdout FILE --stderr FILE

Standard library only.
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

START = "<!-- compare:start -->"
END = "<!-- compare:end -->"
HEADING = "## Side by side: Corvus, Mosquitto, rumqttd"

BROKER_ORDER = ["corvus", "mosquitto", "rumqttd"]
BROKER_NAMES = {"corvus": "Corvus", "mosquitto": "Mosquitto", "rumqttd": "rumqttd"}
# Fixed colours per series (broker, pinned), used by the chart and its legend.
COLOURS = {
    ("corvus", True): "#2563eb",
    ("corvus", False): "#93c5fd",
    ("mosquitto", True): "#16a34a",
    ("rumqttd", True): "#ea580c",
}
FALLBACK_COLOURS = ["#7c3aed", "#db2777", "#0d9488", "#ca8a04"]

THROUGHPUT = ("fanin", "fanout", "topics")

# The targets that are absolute numbers.
MAX_RSS_AFTER_MB = 100
MAX_BYTES_PER_CONNECTION = 2048


# ----------------------------------------------------------------------------------------------
# Small helpers


def num(value):
    """A finite number, or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def dig(obj, *keys):
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def series_name(broker, pinned):
    name = BROKER_NAMES.get(broker, broker)
    return name if pinned else f"{name} (2 cores)"


def series_sort_key(series):
    broker, pinned = series
    rank = BROKER_ORDER.index(broker) if broker in BROKER_ORDER else len(BROKER_ORDER)
    # Corvus pinned, Corvus unpinned, then the peers.
    return (rank, 0 if pinned else 1, broker)


def colour(series, _cache={}):
    if series in COLOURS:
        return COLOURS[series]
    if series not in _cache:
        _cache[series] = FALLBACK_COLOURS[len(_cache) % len(FALLBACK_COLOURS)]
    return _cache[series]


def kind_of(case, runs):
    for run in runs:
        scenario = run.get("scenario")
        if isinstance(scenario, str) and scenario:
            return scenario
    return case.split("-", 1)[0]


def describe_case(case, kind, runs):
    qos = next((r.get("qos") for r in runs if r.get("qos") is not None), None)
    q = f", QoS {qos}" if qos is not None else ""
    if kind == "fanin":
        p = next((r.get("publishers") for r in runs if r.get("publishers")), None)
        return f"fan-in{q}" + (f", {p} publishers → 1" if p else "")
    if kind == "fanout":
        n = next((r.get("subscribers") for r in runs if r.get("subscribers")), None)
        return f"fan-out{q}" + (f", 1 → {n} subscribers" if n else "")
    if kind == "topics":
        return f"topics{q}"
    if kind == "latency":
        rate = next((r.get("rate") for r in runs if r.get("rate")), None)
        if rate is None:
            digits = "".join(ch for ch in case.split("-", 1)[-1] if ch.isdigit())
            if digits:
                rate = int(digits) * (1000 if case.lower().endswith("k") else 1)
        return f"latency at {rate:,} msg/s{q}" if rate else f"latency{q}"
    if kind == "conns":
        c = next((dig(r, "connections", "opened") for r in runs if dig(r, "connections", "opened")), None)
        return (f"{int(c):,} " if c else "") + "idle connections"
    return case


def fmt_int(v):
    return f"{v:,.0f}"


def fmt_us(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def fmt_mb(v):
    return f"{v:,.1f}"


def fmt_ratio(v):
    return f"{v:.2f}×"


def short(v, units):
    """`v` in the largest of `units` ((factor, suffix), largest first, the last with factor 1)
    it reaches, to 3 digits."""
    for factor, suffix in units:
        if v >= factor:
            return f"{v / factor:.3g}{suffix}"
    return f"{v:.3g}{units[-1][1]}"


def short_rate(v):
    return short(v, ((1e6, "M"), (1e3, "k"), (1, "")))


def short_us(v):
    return short(v, ((1e6, " s"), (1e3, " ms"), (1, " µs")))


# ----------------------------------------------------------------------------------------------
# Metrics


class Metric:
    def __init__(self, key, label, get, fmt, better, agg="median"):
        self.key, self.label, self.get, self.fmt, self.better, self.agg = key, label, get, fmt, better, agg


def _kb_to_mb(v):
    v = num(v)
    return None if v is None else v / 1024


def _unanswered(run):
    pings, pongs = num(dig(run, "connections", "pings")), num(dig(run, "connections", "pongs"))
    if pings is None or pongs is None:
        return None
    return max(pings - pongs, 0)


METRICS = {
    "throughput": [
        Metric("rate", "delivered msg/s", lambda r: num(r.get("received_per_s")), fmt_int, "higher"),
        Metric("rss_after", "RSS after run (MB)", lambda r: _kb_to_mb(dig(r, "rss", "after_kb")), fmt_mb, "lower"),
        Metric("rss_peak", "RSS peak (MB)", lambda r: _kb_to_mb(dig(r, "rss", "peak_kb")), fmt_mb, "lower"),
    ],
    "latency": [
        Metric("p50", "p50 latency (µs)", lambda r: num(dig(r, "latency_us", "p50")), fmt_us, "lower"),
        Metric("p99", "p99 latency (µs)", lambda r: num(dig(r, "latency_us", "p99")), fmt_us, "lower"),
        Metric("p999", "p99.9 latency (µs)", lambda r: num(dig(r, "latency_us", "p999")), fmt_us, "lower"),
    ],
    "conns": [
        Metric("opened", "connections held", lambda r: num(dig(r, "connections", "opened")), fmt_int, "higher"),
        Metric("conn_rate", "new connections/s", lambda r: num(dig(r, "connections", "per_s")), fmt_int, "higher"),
        # What the broker spends per connection, whatever limited the rate (on a small machine,
        # often the generator).
        Metric("conn_cpu", "broker CPU per new connection (µs)",
               lambda r: num(dig(r, "connections", "broker_cpu_us")), fmt_int, "lower"),
        Metric("per_conn", "RSS per connection (B)", lambda r: num(dig(r, "rss", "per_connection_bytes")), fmt_int, "lower"),
        Metric("rss_peak", "RSS peak (MB)", lambda r: _kb_to_mb(dig(r, "rss", "peak_kb")), fmt_mb, "lower"),
        Metric("unanswered", "unanswered PINGs (all runs)", _unanswered, fmt_int, "lower", agg="sum"),
    ],
}


def metric_of(group, key):
    """The metric of `group` named `key` (by name: the lists' order is the table's)."""
    return next(m for m in METRICS[group] if m.key == key)


def group_of(kind):
    if kind in THROUGHPUT:
        return "throughput"
    if kind in METRICS:
        return kind
    return "throughput"


def aggregate(metric, runs):
    """(value, n, any_failed) over the runs that have the metric."""
    pairs = [(metric.get(r), r) for r in runs]
    pairs = [(v, r) for v, r in pairs if v is not None]
    if not pairs:
        return None, 0, False
    values = [v for v, _ in pairs]
    value = sum(values) if metric.agg == "sum" else statistics.median(values)
    return value, len(values), any(not r.get("ok", False) for _, r in pairs)


# ----------------------------------------------------------------------------------------------
# Loading and analysis


def load(path):
    meta, runs = {}, []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{path}:{number}: skipped, not JSON: {e}", file=sys.stderr)
                continue
            if obj.get("type") == "meta":
                meta = obj
            else:
                runs.append(obj)
    return meta, runs


class Analysis:
    def __init__(self, meta, runs):
        self.meta, self.runs = meta, runs
        self.cases = []
        for run in runs:
            case = run.get("case") or run.get("scenario") or "?"
            run["case"] = case
            run["pinned"] = bool(run.get("pinned", True))
            if case not in self.cases:
                self.cases.append(case)
        self.by_case = {c: [r for r in runs if r["case"] == c] for c in self.cases}
        self.kind = {c: kind_of(c, rs) for c, rs in self.by_case.items()}
        self.series = sorted({(r.get("broker", "?"), r["pinned"]) for r in runs}, key=series_sort_key)
        self.rounds = max((int(r.get("round", 1)) for r in runs), default=0)

    def series_of(self, case):
        """The series (broker, pinned) that ran `case`, in table order."""
        return sorted({(r.get("broker"), r["pinned"]) for r in self.by_case[case]}, key=series_sort_key)

    def runs_of(self, case, series):
        broker, pinned = series
        return [r for r in self.by_case[case] if r.get("broker") == broker and r["pinned"] == pinned]

    def value(self, case, series, metric):
        return aggregate(metric, self.runs_of(case, series))

    def peers(self):
        return [b for b in BROKER_ORDER[1:] if any(s == (b, True) for s in self.series)]

    def extra_series(self):
        """Series other than the three pinned brokers (e.g. Corvus unpinned)."""
        return [s for s in self.series if not (s[1] and s[0] in BROKER_ORDER)]


def target(analysis, case, series, metric, values):
    """(text, met) for the issue's target on this row, or None when the row has none."""
    kind = analysis.kind[case]
    corvus = values.get(("corvus", True))
    broker, pinned = series

    def verdict(text, met):
        """`met` None: the data is missing."""
        if met is None:
            return f"{text}: no data", None
        return text + (": met" if met else ": **not met**"), met

    def at_most(text, limit):
        return verdict(text, None if corvus is None else corvus <= limit)

    def against(peer, better):
        other = values.get((peer, True))
        name = BROKER_NAMES[peer]
        sign = "≥" if better == "higher" else "≤"
        if corvus is None or other is None:
            return verdict(f"{sign} {name}", None)
        return verdict(f"{sign} {name}", corvus >= other if better == "higher" else corvus <= other)

    if not pinned:
        if broker == "corvus" and metric.key == "rate" and kind in ("fanout", "topics"):
            mine = values.get(series)
            if mine is None or corvus is None:
                return verdict("> 1 core", None)
            return verdict(f"> 1 core ({mine / corvus:.2f}×)", mine > corvus)
        return None
    if broker != "corvus":
        return None
    if group_of(kind) == "throughput":
        if metric.key == "rate":
            return against("rumqttd", "higher")
        if metric.key == "rss_after":
            return at_most(f"≤ {MAX_RSS_AFTER_MB} MB", MAX_RSS_AFTER_MB)
    if kind == "latency" and metric.key in ("p99", "p999"):
        return against("mosquitto", "lower")
    if kind == "conns":
        if metric.key == "per_conn":
            return at_most(f"≤ {MAX_BYTES_PER_CONNECTION:,} B", MAX_BYTES_PER_CONNECTION)
        if metric.key == "conn_rate":
            return against("mosquitto", "higher")
        if metric.key == "conn_cpu":
            return against("mosquitto", "lower")
        if metric.key == "opened":
            runs = analysis.runs_of(case, series)
            failed = sum(num(dig(r, "connections", "failed")) or 0 for r in runs)
            if not runs:
                return verdict("all held", None)
            return verdict(f"all held ({failed:,.0f} failed)", failed == 0 and all(r.get("ok") for r in runs))
        if metric.key == "unanswered":
            return at_most("every PING answered", 0)
    return None


def build_rows(analysis):
    """Rows: dicts with the cells of the table, and the target verdicts."""
    rows = []
    peers = ["mosquitto", "rumqttd"]
    for case in analysis.cases:
        kind = analysis.kind[case]
        metrics = METRICS[group_of(kind)]
        label = f"{case} ({describe_case(case, kind, analysis.by_case[case])})"
        series_here = analysis.series_of(case)
        extra_rows = []  # rows of the other series (Corvus unpinned) come after the case's own
        for metric in metrics:
            values, cells = {}, {}
            for s in series_here:
                v, n, failed = analysis.value(case, s, metric)
                if v is None:
                    continue
                values[s] = v
                text = metric.fmt(v)
                if failed:
                    text += " †"
                if metric.agg == "median" and analysis.rounds and n < analysis.rounds:
                    text += f" (n={n})"
                cells[s] = text
            if not values and not any(s[0] == "corvus" for s in series_here):
                continue
            main = [s for s in series_here if s[1] and s[0] in BROKER_ORDER]
            if main:
                row = {"scenario": label, "metric": metric.label, "series": ("corvus", True)}
                row["Corvus"] = cells.get(("corvus", True), "—")
                for p in peers:
                    row[BROKER_NAMES[p]] = cells.get((p, True), "—")
                c = values.get(("corvus", True))
                for p in peers:
                    o = values.get((p, True))
                    row[f"Corvus/{BROKER_NAMES[p]}"] = fmt_ratio(c / o) if c is not None and o else "—"
                t = target(analysis, case, ("corvus", True), metric, values)
                row["target"], row["met"] = (t if t else ("", None))
                rows.append(row)
            for s in series_here:
                if s in main:
                    continue
                t = target(analysis, case, s, metric, values)
                if s not in cells and t is None:
                    continue
                if t is None and metric.key != "rate":
                    continue  # extra series: only their throughput row
                row = {"scenario": f"{label}, {series_name(*s)}", "metric": metric.label, "series": s}
                broker_col = BROKER_NAMES.get(s[0], s[0])
                for col in ("Corvus", "Mosquitto", "rumqttd"):
                    row[col] = cells.get(s, "—") if col == broker_col else "—"
                row["Corvus/Mosquitto"] = row["Corvus/rumqttd"] = "—"
                row["target"], row["met"] = (t if t else ("", None))
                extra_rows.append(row)
        rows.extend(extra_rows)
    return rows


COLUMNS = ["scenario", "metric", "Corvus", "Mosquitto", "rumqttd", "Corvus/Mosquitto", "Corvus/rumqttd", "target"]
NUMERIC = {"Corvus", "Mosquitto", "rumqttd", "Corvus/Mosquitto", "Corvus/rumqttd"}


def markdown_table(rows):
    out = ["| " + " | ".join(COLUMNS) + " |"]
    out.append("| " + " | ".join("---:" if c in NUMERIC else "---" for c in COLUMNS) + " |")
    for row in rows:
        out.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in COLUMNS) + " |")
    return "\n".join(out)


def plain_table(rows):
    cols = [c for c in COLUMNS]
    cells = [[str(r.get(c, "")).replace("**", "") for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    line = lambda items: "  ".join(  # noqa: E731
        (s.rjust(w) if cols[i] in NUMERIC else s.ljust(w)) for i, (s, w) in enumerate(zip(items, widths))
    ).rstrip()
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def integrity(analysis):
    """Per series: runs, failed runs, lost, duplicated, reordered."""
    out = {}
    for s in analysis.series:
        runs = [r for r in analysis.runs if (r.get("broker"), r["pinned"]) == s]
        tot = {"runs": len(runs), "failed": sum(1 for r in runs if not r.get("ok", False))}
        for key in ("lost", "duplicated", "reordered"):
            tot[key] = int(sum(num(r.get(key)) or 0 for r in runs))
        out[s] = tot
    return out


def failures(analysis):
    lines = []
    for r in analysis.runs:
        if r.get("ok", False):
            continue
        why = r.get("error") or ", ".join(
            f"{k} {int(num(r.get(k)) or 0):,}" for k in ("lost", "duplicated", "reordered") if num(r.get(k))
        ) or f"exit status {r.get('exit_code')}"
        lines.append(f"{r['case']} / {series_name(r.get('broker', '?'), r['pinned'])} / round {r.get('round', '?')}: {why}")
    return lines


# ----------------------------------------------------------------------------------------------
# Markdown


def example_command(analysis):
    def rank(r):
        return (r.get("broker") != "corvus", not r["pinned"], not r.get("ok", False))

    runs = sorted((r for r in analysis.runs if r.get("command")), key=rank)
    return runs[0]["command"] if runs else None


def section(analysis, svg_link, results_path):
    meta = analysis.meta
    rows = build_rows(analysis)
    lines = []
    date = meta.get("date_utc") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(
        f"Latest run: {date}. Written by `bench/compare.sh` (through `bench/render.py`); "
        "everything between the `compare` markers is replaced on every run."
    )
    lines.append("")
    m = meta.get("machine", {})
    if m:
        lines.append(
            f"- **Machine:** {m.get('cpu', '?')}, {m.get('nproc', '?')} CPUs (`nproc`), "
            f"{m.get('ram_gib', '?')} GiB RAM, Linux {m.get('kernel', '?')}."
        )
    versions = meta.get("versions", {})
    if versions:
        vs = [f"{BROKER_NAMES.get(k, k)}: `{v}`" for k, v in versions.items() if k != "commit"]
        if versions.get("commit"):
            vs.append(f"Corvus commit `{versions['commit']}`")
        lines.append("- **Versions:** " + "; ".join(vs) + ".")
    sizes = sorted({r.get("size") for r in analysis.runs if r.get("size") is not None})
    mqtt = {}
    for r in analysis.runs:
        if r.get("mqtt") is not None:
            mqtt.setdefault(BROKER_NAMES.get(r.get("broker"), r.get("broker")), set()).add(str(r["mqtt"]))
    protocol = "; ".join(
        f"{b} MQTT " + "/".join("3.1.1" if v in ("3", "4", "3.1.1") else "5" if v == "5" else v for v in sorted(vs))
        for b, vs in mqtt.items()
    )
    setup = (
        f"loopback; the broker pinned to CPU 0 and the load generator (`corvus bench`) to CPU 1 with "
        f"`taskset`, except the \"2 cores\" rows, where neither is pinned; a fresh broker for every "
        f"measurement; {analysis.rounds} interleaved round{'s' if analysis.rounds != 1 else ''}; "
        f"medians of the rounds"
    )
    if meta.get("duration"):
        setup += f"; {meta['duration']} s per run"
    if sizes:
        setup += "; payload " + ", ".join(f"{s} B" for s in sizes)
    if protocol:
        setup += f"; {protocol}"
    lines.append(f"- **Setup:** {setup}. Configs: `bench/corvus.toml`, `bench/mosquitto.conf`, `bench/rumqttd.toml`.")
    for note in meta.get("notes", []):
        lines.append(f"- {note}")
    lines.append("")
    lines.append("Commands:")
    lines.append("")
    lines.append("```sh")
    lines.append(meta.get("invocation", "bench/compare.sh"))
    example = example_command(analysis)
    if example:
        lines.append("# one of the generator runs it made (the broker's port and PID vary):")
        lines.append(example)
    lines.append("```")
    lines.append("")
    lines.append(markdown_table(rows))
    lines.append("")
    lines.append(
        "Ratios are Corvus's median over the peer's: above 1 is better for throughput and "
        "connection rate, below 1 is better for latency and memory. † a run in that median failed "
        "(see below); (n=…) fewer runs than rounds had the figure."
    )
    lines.append("")
    tallies = integrity(analysis)
    parts = []
    for s, t in tallies.items():
        parts.append(
            f"{series_name(*s)}: {t['lost']:,} lost, {t['duplicated']:,} duplicated, {t['reordered']:,} reordered "
            f"in {t['runs']} runs ({t['failed']} failed)"
        )
    if parts:
        lines.append("**Loss, duplication, reordering** (sums over all runs): " + "; ".join(parts) + ".")
        corvus = [t for s, t in tallies.items() if s[0] == "corvus"]
        if corvus:
            clean = all(t["lost"] == t["duplicated"] == t["reordered"] == 0 and t["failed"] == 0 for t in corvus)
            lines.append(
                "Target, no loss, duplication or reordering in any Corvus run: "
                + ("met." if clean else "**not met**.")
            )
        lines.append("")
    failed = failures(analysis)
    if failed:
        lines.append("Failed runs:")
        lines.append("")
        lines.extend(f"- {f}" for f in failed)
        lines.append("")
    verdicts = [r["met"] for r in rows if r.get("met") is not None]
    if verdicts:
        lines.append(
            f"**Targets** (issue 7, one run, broker on one core): {sum(verdicts)} of {len(verdicts)} "
            "rows with a target met; rows without data are not counted."
        )
        lines.append("")
    scale = []
    for s in analysis.series:
        if not s[1]:
            continue
        for case in analysis.cases:
            if analysis.kind[case] != "conns":
                continue
            v, _, _ = analysis.value(case, s, metric_of("conns", "per_conn"))
            if v:
                scale.append(f"{series_name(*s)} {v * 1e6 / 2**30:,.1f} GiB")
            break
    if scale:
        lines.append(
            "At the measured RSS per idle connection, a million connections would take: "
            + ", ".join(scale)
            + " (broker memory only, not the kernel's socket buffers)."
        )
        lines.append("")
    if svg_link:
        lines.append(f"![Delivered msg/s and p99 latency per broker]({svg_link})")
        lines.append("")
    if results_path:
        lines.append(f"Raw results: `{results_path}` (one JSON object per run; not committed).")
    return "\n".join(lines).rstrip() + "\n", rows


def splice(doc_text, body):
    block = f"{START}\n{body}{END}"
    start, end = doc_text.find(START), doc_text.find(END)
    if start != -1 and end != -1 and end > start:
        return doc_text[:start] + block + doc_text[end + len(END):]
    if start != -1 or end != -1:
        raise SystemExit("render.py: the doc has only one of the compare markers; fix it by hand")
    if not doc_text or doc_text.endswith("\n\n"):
        sep = ""
    elif doc_text.endswith("\n"):
        sep = "\n"
    else:
        sep = "\n\n"
    return f"{doc_text}{sep}{HEADING}\n\n{block}\n"


# ----------------------------------------------------------------------------------------------
# SVG


def nice_ceiling(v):
    if v <= 0:
        return 1.0
    exp = math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * 10**exp >= v:
            return m * 10**exp
    return 10 ** (exp + 1)


class Svg:
    def __init__(self, width, height):
        self.w, self.h, self.items = width, height, []

    def add(self, s):
        self.items.append(s)

    def rect(self, x, y, w, h, fill, title=None, **kw):
        extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in kw.items())
        t = f"<title>{escape(title)}</title>" if title else ""
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{max(h, 0):.1f}" fill="{fill}"{extra}>{t}</rect>')

    def line(self, x1, y1, x2, y2, stroke="#d1d5db", width=1):
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}"/>')

    def text(self, x, y, s, size=12, anchor="middle", weight="normal", fill="#111827", rotate=None):
        tr = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.add(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}"{tr}>{escape(str(s))}</text>'
        )

    def render(self):
        head = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
            f'viewBox="0 0 {self.w} {self.h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
            f'<rect x="0" y="0" width="{self.w}" height="{self.h}" fill="#ffffff"/>\n'
        )
        return head + "\n".join(self.items) + "\n</svg>\n"


def _groups(analysis, kinds, metric):
    groups = []
    for case in analysis.cases:
        if analysis.kind[case] not in kinds:
            continue
        bars = [(s, analysis.value(case, s, metric)[0]) for s in analysis.series_of(case)]
        groups.append((case, bars))
    return groups


def _panel(svg, x0, y0, w, h, title, ylabel, groups, log, fmt_value, fmt_tick):
    svg.text(x0 + w / 2, y0 - 34, title, size=14, weight="bold")
    values = [v for _, bars in groups for _, v in bars if v is not None and v > 0]
    if not groups or not values:
        svg.line(x0, y0 + h, x0 + w, y0 + h, stroke="#6b7280")
        svg.text(x0 + w / 2, y0 + h / 2, "no data", size=13, fill="#6b7280")
        return
    if log:
        lo = 10 ** math.floor(math.log10(min(values)))
        hi = 10 ** math.ceil(math.log10(max(values)) + 0.15)
        if hi / lo < 100:
            hi = lo * 100
        ticks = []
        t = lo
        while t <= hi * 1.0001:
            ticks.append(t)
            t *= 10

        def ypos(v):
            v = max(v, lo)
            return y0 + h - h * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    else:
        hi = nice_ceiling(max(values) * 1.12)
        ticks = [hi * i / 5 for i in range(6)]

        def ypos(v):
            return y0 + h - h * v / hi

    for t in ticks:
        y = ypos(t)
        svg.line(x0, y, x0 + w, y, stroke="#e5e7eb")
        svg.text(x0 - 6, y + 4, fmt_tick(t), size=11, anchor="end", fill="#374151")
    svg.line(x0, y0, x0, y0 + h, stroke="#6b7280")
    svg.line(x0, y0 + h, x0 + w, y0 + h, stroke="#6b7280")
    svg.text(x0 - 58, y0 + h / 2, ylabel, size=12, rotate=-90, fill="#374151")
    gw = w / len(groups)
    for i, (case, bars) in enumerate(groups):
        n = max(len(bars), 1)
        bw = min(56.0, gw * 0.84 / n)
        gx = x0 + gw * i + (gw - bw * n) / 2
        for j, (s, v) in enumerate(bars):
            x = gx + j * bw
            if v is None or v <= 0:
                svg.text(x + bw / 2, y0 + h - 4, "n/a", size=9, fill="#6b7280")
                continue
            y = ypos(v)
            svg.rect(x + 1, y, bw - 2, y0 + h - y, colour(s), title=f"{series_name(*s)}, {case}: {fmt_value(v)}")
            svg.text(x + bw / 2, y - 4, fmt_value(v), size=10 if bw >= 30 else 9, fill="#111827")
        svg.text(x0 + gw * i + gw / 2, y0 + h + 18, case, size=12, fill="#111827")


def chart(analysis):
    tp = metric_of("throughput", "rate")
    p99 = metric_of("latency", "p99")
    left = _groups(analysis, THROUGHPUT, tp)
    right = _groups(analysis, ("latency",), p99)
    width, height = 1120, 470
    svg = Svg(width, height)
    date = analysis.meta.get("date_utc", "")
    svg.text(width / 2, 26, "Corvus, Mosquitto and rumqttd on one core" + (f" ({date})" if date else ""), size=16, weight="bold")
    # Legend.
    series = analysis.series
    lx = width / 2 - (len(series) * 150) / 2
    for k, s in enumerate(series):
        x = lx + k * 150
        svg.rect(x, 40, 14, 14, colour(s))
        svg.text(x + 20, 52, series_name(*s), size=12, anchor="start")
    top, h = 112, 290
    lw = max(260, min(640, 150 * max(len(left), 1)))
    _panel(svg, 90, top, lw, h, "Delivered messages per second (higher is better)", "msg/s", left, False, short_rate, short_rate)
    rx = 90 + lw + 110
    _panel(svg, rx, top, width - rx - 30, h, "p99 latency (lower is better)", "µs, log scale", right, True, short_us, short_us)
    svg.text(width / 2, height - 12,
             "Broker on CPU 0, load generator on CPU 1; \"2 cores\": both unpinned. Medians of the rounds.",
             size=11, fill="#4b5563")
    return svg.render()


# ----------------------------------------------------------------------------------------------
# Commands


def render(results, doc, svg_path, write=True, out=sys.stdout):
    meta, runs = load(results)
    if not runs:
        raise SystemExit(f"render.py: {results} holds no runs")
    analysis = Analysis(meta, runs)
    svg_text = chart(analysis)
    link = None
    if svg_path:
        link = os.path.relpath(os.path.abspath(svg_path), os.path.dirname(os.path.abspath(doc)) if doc else os.getcwd())
    rel_results = os.path.relpath(os.path.abspath(results), os.getcwd())
    if rel_results.startswith(".."):
        rel_results = results
    body, rows = section(analysis, link, rel_results)
    print(plain_table(rows), file=out)
    for s, t in integrity(analysis).items():
        print(
            f"{series_name(*s)}: {t['runs']} runs, {t['failed']} failed; lost {t['lost']}, "
            f"duplicated {t['duplicated']}, reordered {t['reordered']}",
            file=out,
        )
    if write:
        if svg_path:
            os.makedirs(os.path.dirname(os.path.abspath(svg_path)), exist_ok=True)
            with open(svg_path, "w", encoding="utf-8") as f:
                f.write(svg_text)
        if doc:
            text = ""
            if os.path.exists(doc):
                with open(doc, encoding="utf-8") as f:
                    text = f.read()
            with open(doc, "w", encoding="utf-8") as f:
                f.write(splice(text, body))
        print(f"wrote {doc or '(no doc)'} and {svg_path or '(no chart)'}", file=out)
    return body, svg_text


def machine():
    cpu = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    if not cpu:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
    ram = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {"cpu": cpu or "unknown CPU", "nproc": nproc, "ram_gib": ram, "kernel": platform.release()}


def cmd_meta(argv):
    p = argparse.ArgumentParser(prog="render.py meta")
    p.add_argument("--invocation", required=True)
    p.add_argument("--version", action="append", default=[], help="NAME=TEXT")
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--duration")
    a = p.parse_args(argv)
    versions = {}
    for v in a.version:
        name, _, text = v.partition("=")
        versions[name] = text
    meta = {
        "type": "meta",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "invocation": a.invocation,
        "machine": machine(),
        "versions": versions,
        "notes": a.note,
    }
    if a.duration:
        meta["duration"] = num(float(a.duration)) if a.duration.replace(".", "", 1).isdigit() else a.duration
        if isinstance(meta["duration"], float) and meta["duration"].is_integer():
            meta["duration"] = int(meta["duration"])
    print(json.dumps(meta, ensure_ascii=False))


def cmd_record(argv):
    p = argparse.ArgumentParser(prog="render.py record")
    for name in ("case", "broker", "command", "stdout", "stderr"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--pinned", type=int, choices=(0, 1), required=True)
    p.add_argument("--exit-code", type=int, required=True)
    p.add_argument("--error", default=None, help="why the run could not be made (broker did not start, ...)")
    a = p.parse_args(argv)
    obj = None
    try:
        with open(a.stdout, encoding="utf-8", errors="replace") as f:
            lines = [l.strip() for l in f if l.strip().startswith("{")]
        for line in reversed(lines):
            try:
                obj = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    except OSError:
        pass
    stderr_tail = ""
    try:
        with open(a.stderr, encoding="utf-8", errors="replace") as f:
            tail = [l.strip() for l in f.read().splitlines() if l.strip()]
        stderr_tail = tail[-1][-300:] if tail else ""
    except OSError:
        pass
    if not isinstance(obj, dict):
        obj = {"ok": False, "error": a.error or f"no JSON from the generator (exit status {a.exit_code})"
               + (f": {stderr_tail}" if stderr_tail else "")}
    elif a.error:
        obj["ok"] = False
        obj["error"] = a.error
    if a.exit_code != 0:
        obj["ok"] = False
        if "error" not in obj and not any(num(obj.get(k)) for k in ("lost", "duplicated", "reordered")):
            obj["error"] = f"exit status {a.exit_code}" + (f": {stderr_tail}" if stderr_tail else "")
    obj.setdefault("ok", False)
    obj.update({
        "type": "run", "case": a.case, "broker": a.broker, "round": a.round, "pinned": bool(a.pinned),
        "command": a.command, "exit_code": a.exit_code,
    })
    obj.setdefault("scenario", a.case.split("-", 1)[0])
    print(json.dumps(obj, ensure_ascii=False))
    # One progress line for the person watching.
    kind = obj.get("scenario")
    if kind == "latency":
        fig = f"p99 {fmt_us(num(dig(obj, 'latency_us', 'p99')) or 0)} µs"
    elif kind == "conns":
        per = num(dig(obj, "rss", "per_connection_bytes"))
        fig = f"{fmt_int(num(dig(obj, 'connections', 'per_s')) or 0)} conn/s, " + (f"{per:,.0f} B/conn" if per else "? B/conn")
    else:
        fig = f"{fmt_int(num(obj.get('received_per_s')) or 0)} msg/s"
    status = "ok" if obj["ok"] else "FAILED: " + str(obj.get("error") or ", ".join(
        f"{k} {obj.get(k)}" for k in ("lost", "duplicated", "reordered") if num(obj.get(k))))
    print(f"    {fig}  {status}", file=sys.stderr)


def selftest():
    import random

    rnd = random.Random(7)
    tmp = tempfile.mkdtemp(prefix="corvus-render-selftest.")
    try:
        results = os.path.join(tmp, "results.jsonl")
        doc = os.path.join(tmp, "docs", "benchmarks.md")
        svg = os.path.join(tmp, "docs", "benchmarks-compare.svg")
        os.makedirs(os.path.dirname(doc))
        original = "# Benchmarks\n\nExisting text that must stay.\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n"
        with open(doc, "w", encoding="utf-8") as f:
            f.write(original)
        cases = [("fanin-q0", "fanin", 0, None), ("fanin-q1", "fanin", 1, None), ("fanout-q0", "fanout", 0, None),
                 ("topics-q0", "topics", 0, None), ("latency-5k", "latency", 0, 5000),
                 ("latency-20k", "latency", 0, 20000), ("conns", "conns", 0, None)]
        base = {"corvus": 1.0, "mosquitto": 0.2, "rumqttd": 0.9}
        lines = [json.dumps({"type": "meta", "date_utc": "2026-01-01 00:00 UTC", "invocation": "ROUNDS=2 bench/compare.sh",
                             "machine": {"cpu": "Test CPU", "nproc": 2, "ram_gib": 24.0, "kernel": "6.0"},
                             "versions": {"corvus": "corvus 0.1.0", "mosquitto": "mosquitto version 2.0.11",
                                          "rumqttd": "rumqttd 0.20.0"}, "notes": ["rumqttd: MQTT 3.1.1 only."],
                             "duration": 10})]
        for rnd_no in (1, 2):
            for case, kind, qos, rate in cases:
                series = [("corvus", True), ("mosquitto", True), ("rumqttd", True)]
                if case in ("fanout-q0", "topics-q0"):
                    series.append(("corvus", False))
                for broker, pinned in series:
                    f = base[broker] * (1.4 if not pinned else 1.0) * rnd.uniform(0.9, 1.1)
                    if broker == "rumqttd" and case == "fanin-q1":
                        f *= 3  # a target not met
                    run = {"type": "run", "case": case, "scenario": kind, "broker": broker, "round": rnd_no,
                           "pinned": pinned, "mqtt": "3" if broker == "rumqttd" else "5", "qos": qos, "size": 64,
                           "publishers": 4, "subscribers": 1, "lost": 0, "duplicated": 0, "reordered": 0, "ok": True,
                           "received_per_s": 500000 * f, "sent_per_s": 500000 * f,
                           "latency_us": {"p50": 80 / f, "p90": 120 / f, "p99": 300 / f, "p999": 900 / f, "max": 2000 / f,
                                          "samples": 1000},
                           "connections": None, "rss": {"before_kb": 8000, "after_kb": 20000 / f, "peak_kb": 30000 / f,
                                                        "per_connection_bytes": None},
                           "command": f"taskset -c 1 target/release/corvus bench {kind} --qos {qos} --json",
                           "exit_code": 0}
                    if rate:
                        run["rate"] = rate
                    if kind == "conns":
                        run["connections"] = {"opened": 10000, "failed": 0, "per_s": 20000 * f, "pings": 100, "pongs": 100,
                                              "broker_cpu_us": 60 / f}
                        run["rss"]["per_connection_bytes"] = 1500 / f
                    if broker == "mosquitto" and case == "fanin-q1" and rnd_no == 2:
                        run.update({"ok": False, "lost": 12, "exit_code": 1})
                    if broker == "rumqttd" and case == "latency-20k" and rnd_no == 1:
                        run = {"type": "run", "case": case, "broker": broker, "round": rnd_no, "pinned": True,
                               "ok": False, "error": "broker did not start", "exit_code": 1}
                    lines.append(json.dumps(run))
        with open(results, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        sink = open(os.devnull, "w", encoding="utf-8")
        render(results, doc, svg, out=sink)
        render(results, doc, svg, out=sink)  # a second run replaces the section, adds nothing
        with open(doc, encoding="utf-8") as f:
            text = f.read()
        assert text.startswith(original), "the existing content changed"
        assert text.count(START) == 1 and text.count(END) == 1, "markers not exactly once"
        assert text.count(HEADING) == 1, "heading not exactly once"
        assert "| scenario | metric | Corvus | Mosquitto | rumqttd |" in text, "no table"
        assert "benchmarks-compare.svg" in text, "no chart link"
        assert "not met" in text and ": met" in text, "targets not marked"
        # The broker's CPU per connection: Corvus's fake figure is lower than Mosquitto's.
        cpu_row = next(l for l in text.splitlines() if "broker CPU per new connection" in l)
        assert "≤ Mosquitto: met" in cpu_row, f"CPU per connection not judged: {cpu_row}"
        root = ET.parse(svg).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg", f"not an SVG root: {root.tag}"
        rects = root.findall(".//{http://www.w3.org/2000/svg}rect")
        assert len(rects) > 20, f"too few bars: {len(rects)}"
        # A results file with one broker only still renders.
        solo = os.path.join(tmp, "solo.jsonl")
        with open(solo, "w", encoding="utf-8") as f:
            f.write("\n".join(l for l in lines if '"broker": "corvus"' in l) + "\n")
        doc2 = os.path.join(tmp, "other.md")
        render(solo, doc2, os.path.join(tmp, "solo.svg"), out=sink)
        ET.parse(os.path.join(tmp, "solo.svg"))
        with open(doc2, encoding="utf-8") as f:
            solo_text = f.read()
        assert solo_text.count(START) == 1 and HEADING in solo_text, "new doc: no markers"
        corvus_row = next(l for l in solo_text.splitlines() if l.startswith("| fanin-q0") and "delivered" in l)
        cells = [c.strip() for c in corvus_row.strip("|").split("|")]
        # scenario, metric, Corvus, Mosquitto, rumqttd, the two ratios, target
        assert cells[2] not in ("", "—") and cells[3:7] == ["—"] * 4, f"missing peers not shown as —: {corvus_row}"
        sink.close()
        print(f"render.py selftest: ok ({len(lines) - 1} fake runs)")
    finally:
        if os.environ.get("RENDER_SELFTEST_KEEP"):
            print(f"render.py selftest: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv):
    if argv and argv[0] == "meta":
        return cmd_meta(argv[1:])
    if argv and argv[0] == "record":
        return cmd_record(argv[1:])
    p = argparse.ArgumentParser(description="Render bench/compare.sh results into docs/benchmarks.md and an SVG chart.")
    p.add_argument("results", nargs="?", help="a results-*.jsonl file written by bench/compare.sh")
    p.add_argument("--doc", default="docs/benchmarks.md", help="Markdown file to update (default: %(default)s)")
    p.add_argument("--svg", default="docs/benchmarks-compare.svg", help="chart to write (default: %(default)s)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--selftest", action="store_true", help="render fake data in a temporary directory and check it")
    a = p.parse_args(argv)
    if a.selftest:
        return selftest()
    if not a.results:
        p.error("give a results file, or --selftest")
    render(a.results, a.doc, a.svg, write=not a.no_write)


if __name__ == "__main__":
    main(sys.argv[1:])
