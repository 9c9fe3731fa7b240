"""Self-contained HTML pages. For one evaluation: the leaderboard table (with
95% intervals when the run computed them), P@k / R@k curves as inline SVG,
sample queries with their top results as thumbnails, and where the model fails
(its lowest-AP queries, the instances it confuses most). For a comparison of two
runs: the differences with their intervals and p-values, and the queries where
the two models disagree most, their top 5 side by side.

The page is one file that works offline and can be mailed around: CSS is
inline, charts are inline SVG, images are ``data:image/jpeg;base64`` thumbnails,
and there is no JavaScript. A Content-Security-Policy meta tag forbids every
load except ``data:`` images and the inline style, so a page that would fetch
anything is caught by the browser instead of leaking paths to the network.

Rendering never raises for a bad image (unreadable, missing, a crop outside the
image): the thumbnail becomes a grey placeholder whose tooltip gives the reason,
because the report is written after an evaluation that may have taken hours.
Missing or non-numeric report fields render as "—" for the same reason.

Every string from the report or the samples (dataset names, paths, ids, model
metadata) is escaped with :func:`html.escape`.

Thread-safety: the functions share no state; concurrent calls are safe.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import numbers
import os
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["render_html", "write_html_report", "render_comparison_html", "write_comparison_html"]

DEFAULT_COLUMNS = ("P@1", "P@5", "R@1", "R@5", "mAP@10")
HIT_COLOUR = "#1a7f37"    # green: same instance as the query
MISS_COLOUR = "#cf222e"   # red: a different instance
QUERY_COLOUR = "#0969da"
# Series of the per-dataset chart: (curve key, colour, dash pattern or "").
CHART_SERIES = (("P@k", "#0969da", ""), ("R@k", "#d4760a", ""), ("HitRate@k", "#8250df", "6 4"))
JPEG_QUALITY = 80

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
:root { --hit: %(hit)s; --miss: %(miss)s; --query: %(query)s; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1200px; padding: 16px 24px 40px; color: #1f2328; background: #fff;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 8px; }
.muted { color: var(--muted); }
.notice { margin: 12px 0; padding: 10px 14px; border: 2px solid var(--miss); border-radius: 6px;
          background: #ffebe9; color: #82071e; font-weight: 700; font-size: 16px; }
.facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 8px 24px; }
.facts dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 4px 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
details pre { max-height: 320px; overflow: auto; background: #f6f8fa; padding: 8px; font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th.text, td.text { text-align: left; }
td.path { white-space: normal; overflow-wrap: anywhere; min-width: 160px; max-width: 320px; }
thead th { background: #f6f8fa; white-space: normal; vertical-align: bottom; }
.table-wrap { overflow-x: auto; }
tr.average td { font-weight: 700; border-top: 2px solid #8c959f; }
nav a { margin-right: 12px; }
.chart { display: block; max-width: 100%%; height: auto; }
.chart text { font-size: 12px; fill: #1f2328; }
.samples { display: flex; flex-direction: column; gap: 14px; }
.sample { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
figure { margin: 0; width: calc(var(--thumb) + 8px); }
figcaption { font-size: 12px; line-height: 1.3; overflow-wrap: anywhere; }
.thumb { display: block; border: 4px solid var(--line); border-radius: 3px; background: #f6f8fa;
         width: calc(var(--thumb) + 8px); height: calc(var(--thumb) + 8px); object-fit: contain; }
.thumb.query { border-color: var(--query); }
.thumb.hit { border-color: var(--hit); }
.thumb.miss { border-color: var(--miss); }
.placeholder { display: flex; align-items: center; justify-content: center; text-align: center;
               background: #d0d7de; color: #424a53; font-size: 12px; padding: 6px; }
.legend-key { display: inline-block; width: 12px; height: 12px; border: 3px solid; vertical-align: -2px; }
.ci { color: var(--muted); font-size: 12px; }
.thumb.unknown { border-color: #8c959f; }
.pair { display: grid; grid-template-columns: max-content 1fr; gap: 6px 10px; align-items: center; }
.pair .label { font-weight: 700; font-size: 13px; white-space: nowrap; }
.comparison td.better { color: var(--hit); font-weight: 700; }
.comparison td.worse { color: var(--miss); font-weight: 700; }
tr.first td { border-top: 2px solid #8c959f; }
""" % {"hit": HIT_COLOUR, "miss": MISS_COLOUR, "query": QUERY_COLOUR}


def _e(value) -> str:
    """Escaped text of any value (None -> empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def _number(value) -> Optional[float]:
    """A finite float, or None for anything else (None, NaN, text, bools)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are Real too
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _percent(value) -> str:
    number = _number(value)
    return "—" if number is None else f"{100.0 * number:.2f}"


def _seconds(value) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.2f} s"


def _count(value) -> str:
    number = _number(value)
    return "—" if number is None else str(int(number))


# --------------------------------------------------------------------------- thumbnails

def _thumbnail(path, crop, size: int) -> Tuple[Optional[str], str]:
    """(data URI, "") for a readable image, else (None, reason). Never raises."""
    try:
        from PIL import Image
        with Image.open(os.fspath(path)) as opened:
            image = opened.convert("RGB")  # no EXIF transpose: the pipeline decodes without it too
        if crop is not None:
            x, y, w, h = (float(v) for v in crop)
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(image.width), x + w), min(float(image.height), y + h)
            if not (x1 > x0 and y1 > y0):
                return None, (f"crop [x={x:g}, y={y:g}, w={w:g}, h={h:g}] lies outside the "
                              f"{image.width}x{image.height} image")
            image = image.crop((int(x0), int(y0), int(math.ceil(x1)), int(math.ceil(y1))))
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), ""
    except Exception as error:  # noqa: BLE001 - any failure becomes a visible placeholder
        return None, f"{type(error).__name__}: {error}"


class _Thumbnails:
    """Thumbnails by (path, crop): a gallery image shown for several queries is encoded once."""

    def __init__(self, size: int):
        self.size = size
        self._cache: Dict[tuple, Tuple[Optional[str], str]] = {}

    def html(self, path, crop, classes: str, alt: str) -> str:
        try:
            key = (str(path), None if crop is None else tuple(float(v) for v in crop))
        except (TypeError, ValueError):
            key = (str(path), repr(crop))
        if key not in self._cache:
            self._cache[key] = _thumbnail(path, crop, self.size)
        uri, reason = self._cache[key]
        if uri is not None:
            return f'<img class="thumb {classes}" src="{uri}" alt="{_e(alt)}" title="{_e(path)}">'
        return (f'<div class="thumb placeholder {classes}" role="img" aria-label="{_e(alt)}" '
                f'title="{_e(f"{path}: {reason}")}">image unavailable</div>')


# --------------------------------------------------------------------------- chart

def _chart(curves, label: str) -> str:
    """An SVG line chart of P@k, R@k and HitRate@k (percent) against k."""
    if not isinstance(curves, dict):
        return '<p class="muted">No P@k / R@k curves in the report.</p>'
    ks = [_number(k) for k in (curves.get("k") or [])]
    series = []
    for key, colour, dash in CHART_SERIES:
        values = curves.get(key)
        if not isinstance(values, (list, tuple)) or not values:
            continue
        points = [(k, _number(v)) for k, v in zip(ks, values) if k is not None]
        series.append((key, colour, dash, points))
    valid_ks = [k for k in ks if k is not None]
    if not series or not valid_ks:
        return '<p class="muted">No P@k / R@k curves in the report.</p>'

    width, height = 560, 300
    left, right, top, bottom = 56, 130, 16, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    k_min, k_max = min(valid_ks), max(valid_ks)
    span = (k_max - k_min) or 1.0

    def x_of(k: float) -> float:
        return left + (k - k_min) / span * plot_w if k_max > k_min else left + plot_w / 2

    def y_of(fraction: float) -> float:
        return top + (1.0 - min(max(fraction, 0.0), 1.0)) * plot_h

    parts = [f'<svg class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">',
             f"<title>{_e(label)}</title>"]
    for tick in range(0, 101, 20):  # horizontal grid and y ticks
        y = y_of(tick / 100.0)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eaeef2"/>')
        parts.append(f'<line x1="{left - 5}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#57606a"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{tick}%</text>')
    for k in sorted(set(valid_ks)):  # x ticks at every k
        x = x_of(k)
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 5}" stroke="#57606a"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{k:g}</text>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#57606a"/>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#57606a"/>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">k (rank cut-off)</text>')
    parts.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle">percent</text>')

    for index, (key, colour, dash, points) in enumerate(series):
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        run: List[str] = []  # a missing value breaks the line instead of dropping to zero
        runs: List[List[str]] = []
        for k, value in points:
            if value is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{x_of(k):.1f},{y_of(value):.1f}")
        if run:
            runs.append(run)
        for run in runs:
            parts.append(f'<polyline class="series" data-series="{_e(key)}" fill="none" stroke="{colour}" '
                         f'stroke-width="2"{dash_attr} points="{" ".join(run)}"/>')
        for k, value in points:
            if value is not None:
                parts.append(f'<circle cx="{x_of(k):.1f}" cy="{y_of(value):.1f}" r="3" fill="{colour}">'
                             f"<title>{_e(key.replace('@k', f'@{k:g}'))} = {100 * value:.2f}%</title></circle>")
        legend_y = top + 10 + 22 * index
        legend_x = left + plot_w + 16
        parts.append(f'<line x1="{legend_x}" y1="{legend_y}" x2="{legend_x + 24}" y2="{legend_y}" '
                     f'stroke="{colour}" stroke-width="2"{dash_attr}/>')
        parts.append(f'<text x="{legend_x + 30}" y="{legend_y + 4}">{_e(key)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- sections

def _facts(rows: Sequence[Tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _header(report: dict) -> str:
    title = report.get("title") or "Retrieval evaluation"
    model = report.get("model") if isinstance(report.get("model"), dict) else {}
    out = [f"<header><h1>{_e(title)}</h1>"]
    if report.get("created"):
        out.append(f'<div class="muted">created {_e(report["created"])}</div>')
    if model.get("random_weights"):
        out.append('<div class="notice" id="random-weights">Model has random weights — '
                   "numbers are not meaningful (they only show that the pipeline runs).</div>")
    out.append("</header>")

    sha = str(model.get("sha256") or "")
    model_rows = [("path", _e(model.get("path", "—"))),
                  ("sha256", f'<code title="{_e(sha)}">{_e(sha[:12]) or "—"}</code>'),
                  ("weights", "random (not trained)" if model.get("random_weights") else "from checkpoint")]
    versions = report.get("versions") if isinstance(report.get("versions"), dict) else {}
    variant = report.get("metric_variant") if isinstance(report.get("metric_variant"), dict) else {}
    total = (report.get("timing") or {}).get("total_s") if isinstance(report.get("timing"), dict) else None
    version_rows = [(k, _e(v)) for k, v in versions.items()] + [("total time", _e(_seconds(total)))]
    out.append('<section class="facts">')
    out.append("<div><h3>Model</h3>" + _facts(model_rows))
    metadata = model.get("metadata")
    if metadata:
        try:
            text = json.dumps(metadata, indent=1, sort_keys=True, default=str, ensure_ascii=False)
        except (TypeError, ValueError):  # mixed key types, cycles: show it anyway
            text = repr(metadata)
        out.append(f"<details><summary>model metadata</summary><pre>{_e(text)}</pre></details>")
    out.append("</div>")
    out.append("<div><h3>Versions</h3>" + _facts(version_rows) + "</div>")
    out.append("<div><h3>Metric variant</h3>" + _facts([(k, _e(v)) for k, v in variant.items()]) + "</div>")
    out.append("</section>")
    return "".join(out)


def _interval(bounds) -> Optional[Tuple[float, float]]:
    """(low, high) from a [low, high] pair of finite numbers, else None."""
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        return None
    low, high = _number(bounds[0]), _number(bounds[1])
    return None if low is None or high is None else (low, high)


def _cell(value, intervals, column: str) -> str:
    """A table cell: the value in percent and, when known, its interval below."""
    text = _percent(value)
    bounds = _interval(intervals.get(column)) if isinstance(intervals, dict) else None
    if bounds is not None and text != "—":
        text += f' <span class="ci">[{100 * bounds[0]:.2f}, {100 * bounds[1]:.2f}]</span>'
    return f"<td>{text}</td>"


def _interval_note(report: dict) -> str:
    settings = report.get("bootstrap") if isinstance(report.get("bootstrap"), dict) else {}
    resamples, seed = _number(settings.get("resamples")), settings.get("seed")
    if not resamples:
        return ""
    return (f'<p class="muted">In brackets: 95% bootstrap intervals over queries (percentile method, '
            f"{int(resamples)} resamples, seed {_e(seed)}; the Average row resamples every dataset "
            "independently). With few queries a point or two is often within them.</p>")


def _leaderboard(report: dict, datasets: List[dict], columns: List[str]) -> str:
    out = ['<section id="leaderboard"><h2>Leaderboard</h2>',
           '<p class="muted">Percent, two decimals; the Average row is the mean over datasets.</p>',
           '<table class="leaderboard"><thead><tr><th>Dataset</th>']
    out += [f"<th>{_e(c)}</th>" for c in columns]
    out.append("</tr></thead><tbody>")
    for index, dataset in enumerate(datasets):
        metrics = dataset.get("metrics") if isinstance(dataset.get("metrics"), dict) else {}
        out.append(f'<tr><td><a href="#dataset-{index}">{_e(dataset.get("name", "?"))}</a></td>')
        out += [_cell(metrics.get(c), dataset.get("ci95"), c) for c in columns]
        out.append("</tr>")
    average = report.get("average") if isinstance(report.get("average"), dict) else {}
    out.append('<tr class="average"><td>Average</td>')
    out += [_cell(average.get(c), report.get("average_ci95"), c) for c in columns]
    out.append("</tr></tbody></table>")
    out.append(_interval_note(report))

    out.append('<h3>Datasets</h3><div class="table-wrap"><table class="datasets"><thead><tr><th>Dataset</th>'
               '<th class="text">Format</th><th class="text">Path</th><th>Scored queries</th><th>Lone queries</th>'
               "<th>Gallery</th><th>Self-match excluded</th><th>Encode</th><th>Search</th><th>Score</th>"
               "<th>Encoded / cached images</th></tr></thead><tbody>")
    for dataset in datasets:
        timing = dataset.get("timing") if isinstance(dataset.get("timing"), dict) else {}
        exclude = dataset.get("exclude_self")
        out.append(
            f'<tr><td>{_e(dataset.get("name", "?"))}</td><td class="text">{_e(dataset.get("format", "—"))}</td>'
            f'<td class="text path">{_e(dataset.get("path", "—"))}</td>'
            f'<td>{_count(dataset.get("num_queries"))}</td><td>{_count(dataset.get("lone_queries"))}</td>'
            f'<td>{_count(dataset.get("gallery_size"))}</td>'
            f'<td>{"—" if exclude is None else ("yes" if exclude else "no")}</td>'
            f'<td>{_seconds(timing.get("encode_s"))}</td><td>{_seconds(timing.get("search_s"))}</td>'
            f'<td>{_seconds(timing.get("score_s"))}</td>'
            f'<td>{_count(timing.get("encoded_images"))} / {_count(timing.get("cached_images"))}</td></tr>')
    out.append("</tbody></table></div></section>")
    return "".join(out)


_LEGEND = ('<p class="muted">Each row: the query (blue), then its top results, best first. '
           f'<span class="legend-key" style="border-color:{HIT_COLOUR}"></span> same instance, '
           f'<span class="legend-key" style="border-color:{MISS_COLOUR}"></span> different instance.</p>')


def _query_figure(query: dict, thumbnails: _Thumbnails, note: str = "") -> str:
    query_id = query.get("instance_id")
    crop = query.get("crop")
    crop_note = ""
    if crop is not None:
        crop_note = "<br>crop " + _e(",".join(str(v) for v in crop) if isinstance(crop, (list, tuple)) else crop)
    return ('<figure class="query">' +
            thumbnails.html(query.get("path", ""), crop, "query", f"query, instance {query_id}") +
            f"<figcaption><b>query</b><br>id {_e(query_id)}{crop_note}{note}</figcaption></figure>")


def _result_figures(results, thumbnails: _Thumbnails) -> str:
    """Thumbnails of ranked results: green border for the query's instance, red
    for another, grey when the run did not record instance ids."""
    out = []
    for rank, result in enumerate(results or [], start=1):
        if not isinstance(result, dict):
            continue
        known = result.get("relevant") is not None
        relevant = bool(result.get("relevant"))
        verdict = ("hit" if relevant else "miss") if known else "unknown"
        score = _number(result.get("score"))
        score_text = "—" if score is None else f"{score:.3f}"
        which = ("same" if relevant else "different") if known else "unknown"
        out.append(f'<figure class="result" data-relevant="{("true" if relevant else "false") if known else ""}">')
        out.append(thumbnails.html(result.get("path", ""), result.get("crop"), verdict,
                                   f"rank {rank}, instance {result.get('instance_id')}, {which} instance"))
        out.append(f"<figcaption>#{rank} · {score_text}<br>id {_e(result.get('instance_id'))}"
                   "</figcaption></figure>")
    return "".join(out)


def _samples(samples, thumbnails: _Thumbnails) -> str:
    if not isinstance(samples, (list, tuple)) or not samples:
        return '<p class="muted">No sample queries.</p>'
    out = [_LEGEND, '<div class="samples">']
    for sample in samples:
        if not isinstance(sample, dict):
            continue
        query = sample.get("query") if isinstance(sample.get("query"), dict) else {}
        ap = _number(sample.get("ap"))
        note = "" if ap is None else f"<br>AP@10 {100 * ap:.2f}"
        out.append('<div class="sample">' + _query_figure(query, thumbnails, note))
        out.append(_result_figures(sample.get("results"), thumbnails))
        out.append("</div>")
    out.append("</div>")
    return "".join(out)


def _failures(dataset: dict, thumbnails: _Thumbnails) -> str:
    """The dataset's lowest-AP queries and its most confused instance pairs."""
    lowest, confusions = dataset.get("lowest_ap_queries"), dataset.get("confusions")
    if not lowest and not confusions:
        return ""
    out = ['<h3>Where the model fails</h3>']
    if isinstance(lowest, (list, tuple)) and lowest:
        out.append('<p class="muted">The queries with the lowest AP@10 and their top results.</p>')
        out.append(_samples(lowest, thumbnails).replace('<div class="samples">', '<div class="samples failures">', 1))
    if isinstance(confusions, (list, tuple)) and confusions:
        out.append(f'<p class="muted">Instance pairs most often confused: the query\'s instance, the different '
                   f'instance ranked first, and how many queries did so ({_count(dataset.get("rank1_errors"))} '
                   "queries with a wrong first result in all).</p>")
        out.append('<table class="confusions"><thead><tr><th>Query instance</th><th class="text">Wrong instance '
                   "at rank 1</th><th>Queries</th></tr></thead><tbody>")
        for pair in confusions:
            if isinstance(pair, dict):
                out.append(f'<tr><td>{_e(pair.get("query_instance"))}</td>'
                           f'<td class="text">{_e(pair.get("retrieved_instance"))}</td>'
                           f'<td>{_count(pair.get("count"))}</td></tr>')
        out.append("</tbody></table>")
    return "".join(out)


def _dataset_section(index: int, dataset: dict, samples, thumbnails: _Thumbnails) -> str:
    name = dataset.get("name", "?")
    out = [f'<section class="dataset" id="dataset-{index}"><h2>{_e(name)}</h2>',
           f'<p>{_count(dataset.get("num_queries"))} scored queries, {_count(dataset.get("lone_queries"))} lone '
           f'(no match in the gallery, excluded) of {_count(dataset.get("total_queries"))}; gallery of '
           f'{_count(dataset.get("gallery_size"))} images.</p>',
           _chart(dataset.get("curves"), f"{name}: P@k, R@k and HitRate@k for k = 1..10"),
           "<h3>Sample queries</h3>", _samples(samples, thumbnails), _failures(dataset, thumbnails), "</section>"]
    return "".join(out)


# --------------------------------------------------------------------------- public

def render_html(report: dict, samples: dict, *, thumbnail_size: int = 128) -> str:
    """The report page as one HTML string.

    ``report``: the evaluation's JSON dict (title, created, model, versions,
    metric_variant, columns, datasets[name, metrics, curves, counts, timing],
    average, timing); metric values are fractions and shown as percent with two
    decimals. ``samples``: dataset name -> list of ``{"query": {path, instance_id,
    crop}, "results": [{path, instance_id, score, relevant, crop}, ...]}``, crops as
    ``[x, y, w, h]`` pixels or None. ``thumbnail_size``: longest thumbnail side in
    pixels. Unreadable images become placeholders; missing fields render as "—".
    """
    if isinstance(thumbnail_size, bool) or not isinstance(thumbnail_size, int) or thumbnail_size < 16:
        raise ValueError(f"thumbnail_size must be an integer of at least 16 pixels, got {thumbnail_size!r}")
    if not isinstance(report, dict):
        raise TypeError(f"report must be a dict (the evaluation's report.json), got {type(report).__name__}")
    samples = samples if isinstance(samples, dict) else {}
    datasets = [d for d in (report.get("datasets") or []) if isinstance(d, dict)]
    columns = [str(c) for c in (report.get("columns") or DEFAULT_COLUMNS)]
    thumbnails = _Thumbnails(thumbnail_size)
    title = report.get("title") or "Retrieval evaluation"

    body = [_header(report)]
    if datasets:
        body.append("<nav>" + "".join(f'<a href="#dataset-{i}">{_e(d.get("name", "?"))}</a>'
                                      for i, d in enumerate(datasets)) + "</nav>")
    body.append(_leaderboard(report, datasets, columns))
    for index, dataset in enumerate(datasets):
        body.append(_dataset_section(index, dataset, samples.get(dataset.get("name")), thumbnails))
    body.append('<footer class="muted"><p>Written by perception_retrieval; self-contained, works offline.'
                "</p></footer>")
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
            f'<body style="--thumb: {thumbnail_size}px">\n' + "\n".join(body) + "\n</body></html>\n")


def write_html_report(path, report: dict, samples: dict, *, thumbnail_size: int = 128) -> None:
    """Render the page and write it to ``path`` atomically (``path + ".tmp"``, then
    ``os.replace``), so a reader never sees half a page. Creates the parent folder."""
    _write_page(path, render_html(report, samples, thumbnail_size=thumbnail_size))


# --------------------------------------------------------------------------- comparison page

def _signed_points(value) -> str:
    number = _number(value)
    return "—" if number is None else f"{100.0 * number:+.2f}"


def _p_text(value) -> str:
    number = _number(value)
    if number is None:
        return "—"
    return f"{number:.1e}" if number < 0.001 else f"{number:.3f}"


def _comparison_table(report: dict, columns: List[str]) -> str:
    out = ['<section id="comparison"><h2>B − A</h2>',
           '<p class="muted">Percent; differences in percentage points, green where B is higher and the interval '
           "excludes 0, red where B is lower and it excludes 0.</p>",
           '<div class="table-wrap"><table class="comparison"><thead><tr><th>Dataset</th><th class="text">Metric</th>'
           "<th>A</th><th>B</th><th>B − A</th><th>95% interval of B − A</th><th>p</th></tr></thead><tbody>"]
    datasets = [d for d in (report.get("datasets") or []) if isinstance(d, dict)]
    rows = [(d.get("name", "?"), d.get("metrics"), f"cmp-{i}") for i, d in enumerate(datasets)]
    rows.append(("Average", report.get("average"), None))
    for name, table, anchor in rows:
        table = table if isinstance(table, dict) else {}
        for position, column in enumerate(columns):
            cell = table.get(column) if isinstance(table.get(column), dict) else {}
            bounds = _interval(cell.get("ci95"))
            verdict = ""
            if bounds is not None and bounds[0] > 0:
                verdict = ' class="better"'
            elif bounds is not None and bounds[1] < 0:
                verdict = ' class="worse"'
            interval = "—" if bounds is None else f"[{100 * bounds[0]:+.2f}, {100 * bounds[1]:+.2f}]"
            label = _e(name) if anchor is None else f'<a href="#{anchor}">{_e(name)}</a>'
            row_class = ' class="first"' if position == 0 else ""
            out.append(f'<tr{row_class}><td>{label if position == 0 else ""}</td><td class="text">{_e(column)}</td>'
                       f"<td>{_percent(cell.get('a'))}</td><td>{_percent(cell.get('b'))}</td>"
                       f"<td{verdict}>{_signed_points(cell.get('diff'))}</td><td>{interval}</td>"
                       f"<td>{_p_text(cell.get('p'))}</td></tr>")
    out.append("</tbody></table></div>")
    boot = report.get("bootstrap") if isinstance(report.get("bootstrap"), dict) else {}
    perm = report.get("permutation_test") if isinstance(report.get("permutation_test"), dict) else {}
    out.append(f'<p class="muted">Interval: paired bootstrap over queries (percentile method, '
               f'{_count(boot.get("resamples"))} resamples, seed {_e(boot.get("seed"))}; the Average resamples every '
               f'dataset independently). p: two-sided sign-flip permutation test of the mean per-query difference '
               f'({_count(perm.get("permutations"))} random sign assignments, seed {_e(perm.get("seed"))}), '
               "p = (1 + #{|T*| ≥ |T|}) / (1 + permutations).</p></section>")
    return "".join(out)


def _comparison_header(report: dict) -> str:
    title = report.get("title") or "Retrieval comparison"
    runs = report.get("runs") if isinstance(report.get("runs"), dict) else {}
    out = [f"<header><h1>{_e(title)}</h1>"]
    if report.get("created"):
        out.append(f'<div class="muted">created {_e(report["created"])}</div>')
    if any(isinstance(r, dict) and r.get("random_weights") for r in runs.values()):
        out.append('<div class="notice" id="random-weights">A model has random weights — its numbers are not '
                   "meaningful (they only show that the pipeline runs).</div>")
    out.append('</header><section class="facts">')
    for key in ("a", "b"):
        run = runs.get(key) if isinstance(runs.get(key), dict) else {}
        sha = str(run.get("sha256") or "")
        out.append(f"<div><h3>Model {key.upper()}</h3>" + _facts([
            ("model", _e(run.get("model") or "—")), ("run", _e(run.get("folder") or "—")),
            ("sha256", f'<code title="{_e(sha)}">{_e(sha[:12]) or "—"}</code>'),
            ("weights", "random (not trained)" if run.get("random_weights") else "from checkpoint")]) + "</div>")
    out.append("</section>")
    return "".join(out)


def _disagreements(dataset: dict, thumbnails: _Thumbnails) -> str:
    samples = dataset.get("disagreements")
    if not isinstance(samples, (list, tuple)) or not samples:
        return '<p class="muted">No scored query to show.</p>'
    out = [_LEGEND.replace("then its top results", "then each model's top results"), '<div class="samples">']
    for sample in samples:
        if not isinstance(sample, dict):
            continue
        query = sample.get("query") if isinstance(sample.get("query"), dict) else {}
        ap = sample.get("ap") if isinstance(sample.get("ap"), dict) else {}
        out.append('<div class="sample disagreement">' + _query_figure(query, thumbnails) + '<div class="pair">')
        for key in ("a", "b"):
            value = _number(ap.get(key))
            out.append(f'<div class="label">{key.upper()}<br><span class="muted">AP@10 '
                       f'{"—" if value is None else f"{100 * value:.2f}"}</span></div>'
                       f'<div class="sample" data-model="{key}">{_result_figures(sample.get(key), thumbnails)}</div>')
        out.append("</div></div>")
    out.append("</div>")
    return "".join(out)


def render_comparison_html(report: dict, *, thumbnail_size: int = 96) -> str:
    """The comparison page (from compare.compare_runs's report) as one HTML
    string: both models, the table of differences with intervals and p-values,
    and per dataset the queries where the models disagree most with both top 5s.
    The same rules as render_html: offline, escaped, never raises for a bad image."""
    if isinstance(thumbnail_size, bool) or not isinstance(thumbnail_size, int) or thumbnail_size < 16:
        raise ValueError(f"thumbnail_size must be an integer of at least 16 pixels, got {thumbnail_size!r}")
    if not isinstance(report, dict):
        raise TypeError(f"report must be a dict (comparison_report.json), got {type(report).__name__}")
    columns = [str(c) for c in (report.get("columns") or DEFAULT_COLUMNS)]
    datasets = [d for d in (report.get("datasets") or []) if isinstance(d, dict)]
    thumbnails = _Thumbnails(thumbnail_size)
    body = [_comparison_header(report), _comparison_table(report, columns)]
    for index, dataset in enumerate(datasets):
        body.append(f'<section class="dataset" id="cmp-{index}"><h2>{_e(dataset.get("name", "?"))}</h2>'
                    f'<p>{_count(dataset.get("num_queries"))} scored queries of {_count(dataset.get("total_queries"))}.'
                    " The queries where the models disagree most (largest AP@10 difference, then fewest top-5 images "
                    "in common):</p>" + _disagreements(dataset, thumbnails) + "</section>")
    body.append('<footer class="muted"><p>Written by perception_retrieval; self-contained, works offline.'
                "</p></footer>")
    title = report.get("title") or "Retrieval comparison"
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
            f'<body style="--thumb: {thumbnail_size}px">\n' + "\n".join(body) + "\n</body></html>\n")


def write_comparison_html(path, report: dict, *, thumbnail_size: int = 96) -> None:
    """render_comparison_html written atomically, like write_html_report."""
    _write_page(path, render_comparison_html(report, thumbnail_size=thumbnail_size))


def _write_page(path, page: str) -> None:
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(page)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
