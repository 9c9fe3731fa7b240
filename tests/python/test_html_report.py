"""perception_retrieval.html_report: the self-contained evaluation page.

A fabricated report and real small images written here (plus a missing file, a
corrupt one and a crop outside its image) are rendered; the page is parsed with
the standard library's HTMLParser and checked against values written out by hand.
Then headless Chromium (Debian's ``chromium``) loads it offline: every <img>
decodes, no error reaches the console, borders have the right colours, and a
screenshot is not blank."""

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from perception_retrieval import html_report

EVIL = "<script>alert(1)</script>"
COLUMNS = ["P@1", "P@5", "R@1", "R@5", "mAP@10"]


# --------------------------------------------------------------------------- page parsing

class Page(HTMLParser):
    """Elements (tag, attrs, text inside) in document order, and leaderboard rows."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.elements = []      # [tag, attrs dict, collected text]
        self.open = []          # indices of open elements
        self.tables = {}        # table class -> rows of cell texts
        self._table = None
        self._cell = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append([tag, attrs, ""])
        if tag in ("img", "meta", "br", "circle", "line", "polyline"):
            return  # void (or self-closed in our SVG) elements
        self.open.append(len(self.elements) - 1)
        if tag == "table":
            self._table = attrs.get("class", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = ""

    def handle_startendtag(self, tag, attrs):
        self.elements.append([tag, dict(attrs), ""])

    def handle_endtag(self, tag):
        for position in range(len(self.open) - 1, -1, -1):
            if self.elements[self.open[position]][0] == tag:
                del self.open[position:]
                break
        if tag in ("td", "th") and self._table is not None and self._cell is not None:
            self.tables[self._table][-1].append(self._cell.strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        for index in self.open:
            self.elements[index][2] += data
        if self._cell is not None:
            self._cell += data

    def find(self, tag, **attrs):
        out = []
        for name, element_attrs, text in self.elements:
            if name != tag:
                continue
            if all(value in (element_attrs.get(key.rstrip("_")) or "").split() for key, value in attrs.items()):
                out.append((element_attrs, text))
        return out


# --------------------------------------------------------------------------- fixtures

def write_image(path, colours, size=(200, 150), fmt=None):
    """An image split into vertical bands of the given colours."""
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    bands = np.array_split(np.arange(width), len(colours))
    for columns, colour in zip(bands, colours):
        pixels[:, columns] = colour
    Image.fromarray(pixels).save(path, format=fmt)
    return str(path)


BLUE, YELLOW, GREY, TEAL, PURPLE = (30, 60, 200), (240, 220, 40), (128, 128, 128), (20, 160, 170), (120, 40, 160)


def fabricated(tmp_path, random_weights=True):
    """A report with three datasets (one named like an XSS attack) and samples with
    real images, a missing file, a corrupt file and a crop outside its image."""
    folder = tmp_path / 'imgs & "co"'  # quotes and ampersands in paths must survive attributes
    folder.mkdir(parents=True)
    images = {
        "q1": write_image(folder / "q1.jpg", [BLUE, YELLOW]),   # left blue, right yellow
        "g1": write_image(folder / "g1.png", [BLUE], fmt="PNG"),
        "g2": write_image(folder / "g2.jpg", [YELLOW]),
        "g3": write_image(folder / "g3.jpg", [GREY, TEAL], size=(64, 300)),
        "g4": write_image(folder / "g4.jpg", [PURPLE], size=(40, 40)),
    }
    (folder / "corrupt.jpg").write_bytes(b"this is not a JPEG")
    images["corrupt"] = str(folder / "corrupt.jpg")
    images["missing"] = str(folder / "missing.jpg")

    def result(key, instance, score, relevant, crop=None):
        return {"path": images[key], "instance_id": instance, "score": score, "relevant": relevant, "crop": crop}

    samples = {
        "SOP": [
            {"query": {"path": images["q1"], "instance_id": "123", "crop": None},
             "results": [result("g1", "123", 0.93, True), result("g2", "77", 0.81, False),
                         result("missing", "123", 0.80, True), result("g3", "9", 0.5, False),
                         result("g4", "123", 0.25, True)]},
            # crop [100, 0, 100, 150] is the yellow right half of q1
            {"query": {"path": images["q1"], "instance_id": "77", "crop": [100, 0, 100, 150]},
             "results": [result("g2", "77", 0.99, True), result("corrupt", "5", 0.7, False),
                         result("g1", "123", 0.6, False, crop=[500, 500, 10, 10])]},
        ],
        EVIL: [
            {"query": {"path": images["g3"], "instance_id": "<b>x</b>", "crop": None},
             "results": [result("g3", "<b>x</b>", 1.0, True), result("g4", "y", 0.1, False)]},
        ],
        "not in the report": [{"query": {"path": images["g1"], "instance_id": 1, "crop": None}, "results": []}],
    }
    curves = {"k": list(range(1, 11)),
              "P@k": [0.9, 0.8, 0.7, 0.62, 0.55, 0.5, 0.45, 0.41, 0.38, 0.35],
              "R@k": [0.2, 0.3, 0.4, 0.47, 0.53, 0.58, 0.62, 0.65, 0.68, 0.7],
              "HitRate@k": [0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.98, 0.99, 1.0]}

    def dataset(name, metrics, num_queries, lone):
        return {"name": name, "format": "sop", "path": str(folder), "num_queries": num_queries, "lone_queries": lone,
                "total_queries": num_queries + lone, "gallery_size": num_queries + lone, "exclude_self": True,
                "metrics": metrics, "curves": curves,
                "timing": {"encode_s": 12.3, "search_s": 0.1, "score_s": 0.01, "encoded_images": 100,
                           "cached_images": 23}}

    report = {
        "title": "PE-Core retrieval evaluation",
        "created": "2026-11-29T05:12:00Z",
        "model": {"path": "/models/pe-core <L14>.pt", "sha256": "0123456789abcdef" * 4,
                  "random_weights": random_weights, "metadata": {"image_size": 336, "note": "</pre><i>x</i>"}},
        "versions": {"perception_retrieval": "0.1.0", "torch": "1.13.1", "python": "3.11.2"},
        "metric_variant": {"ap_normalizer": "min_r_k", "precision": "hits in top k / k",
                           "recall": "hits in top k / R", "lone_queries": "excluded and counted",
                           "self_match": "excluded by index"},
        "columns": COLUMNS,
        "datasets": [
            dataset("SOP", {"P@1": 0.8123, "P@5": 0.5, "R@1": 0.123456, "R@5": 1.0, "mAP@10": 0.0}, 120, 3),
            dataset(EVIL, {"P@1": 0.25, "P@5": 0.0449, "R@1": 0.99999, "R@5": 0.33333333, "mAP@10": None}, 7, 0),
            dataset("Hornbach & Co", {"P@1": np.float32(0.5), "P@5": 0.1, "R@1": 0.5, "R@5": 0.5,
                                      "mAP@10": float("nan")}, 40, 11),
        ],
        "average": {"P@1": 0.52076667, "P@5": 0.21496667, "R@1": 0.53781867, "R@5": 0.61111111, "mAP@10": 0.0},
        "timing": {"total_s": 40.1},
    }
    return report, samples, images


# Expected cells, written out by hand from the fractions above (percent, 2 decimals).
EXPECTED_LEADERBOARD = [
    ["Dataset", "P@1", "P@5", "R@1", "R@5", "mAP@10"],
    ["SOP", "81.23", "50.00", "12.35", "100.00", "0.00"],
    [EVIL, "25.00", "4.49", "100.00", "33.33", "—"],
    ["Hornbach & Co", "50.00", "10.00", "50.00", "50.00", "—"],
    ["Average", "52.08", "21.50", "53.78", "61.11", "0.00"],
]


def decode_data_uri(uri):
    prefix = "data:image/jpeg;base64,"
    assert uri.startswith(prefix), uri[:40]
    return Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):], validate=True)))


def is_green(rgb):
    r, g, b = rgb
    return g > 90 and g > r + 50 and g > b + 30


def is_red(rgb):
    r, g, b = rgb
    return r > 150 and r > g + 80 and r > b + 80


# --------------------------------------------------------------------------- static checks

def test_leaderboard_counts_and_header(tmp_path):
    report, samples, _ = fabricated(tmp_path)
    text = html_report.render_html(report, samples)
    page = Page(text)
    assert page.tables["leaderboard"] == EXPECTED_LEADERBOARD
    counts = {row[0]: row for row in page.tables["datasets"][1:]}
    header = page.tables["datasets"][0]
    assert header[header.index("Scored queries"):header.index("Gallery") + 1] == ["Scored queries", "Lone queries",
                                                                                 "Gallery"]
    column = header.index("Scored queries")
    assert counts["SOP"][column:column + 3] == ["120", "3", "123"]
    assert counts["Hornbach & Co"][column:column + 3] == ["40", "11", "51"]
    assert counts["SOP"][header.index("Encoded / cached images")] == "100 / 23"

    assert page.find("title")[0][1] == "PE-Core retrieval evaluation"
    assert page.find("h1")[0][1] == "PE-Core retrieval evaluation"
    notice = page.find("div", class_="notice")
    assert len(notice) == 1 and "random weights — numbers are not meaningful" in notice[0][1]
    flat = re.sub(r"\s+", " ", "".join(element[2] for element in page.elements if element[0] == "body"))
    assert "0123456789ab" in flat and "0123456789abcdef0123" not in flat  # hash prefix shown, full one in title
    assert page.find("code", title="0123456789abcdef" * 4)
    assert "/models/pe-core <L14>.pt" in flat
    for value in ("0.1.0", "1.13.1", "3.11.2", "min_r_k", "hits in top k / R", "excluded by index", "40.10 s"):
        assert value in flat, value
    assert "120 scored queries, 3 lone" in flat and "40 scored queries, 11 lone" in flat

    calm = html_report.render_html(fabricated(tmp_path / "calm", random_weights=False)[0], {})
    assert "numbers are not meaningful" not in calm


def test_columns_follow_the_report(tmp_path):
    report, samples, _ = fabricated(tmp_path)
    report["columns"] = ["mAP@10", "P@1"]
    page = Page(html_report.render_html(report, samples))
    assert page.tables["leaderboard"][0] == ["Dataset", "mAP@10", "P@1"]
    assert page.tables["leaderboard"][1] == ["SOP", "0.00", "81.23"]
    assert page.tables["leaderboard"][-1] == ["Average", "0.00", "52.08"]


def test_user_strings_are_escaped(tmp_path):
    report, samples, images = fabricated(tmp_path)
    text = html_report.render_html(report, samples)
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert "<i>x</i>" not in text  # model metadata cannot close the <pre> it is shown in
    page = Page(text)
    # Paths with quotes and '&' come back intact from the title attributes.
    titles = {attrs.get("title") for attrs, _ in page.find("img")}
    assert images["q1"] in titles and images["g1"] in titles
    headings = [t for _, t in page.find("h2")]
    assert EVIL in headings and "Hornbach & Co" in headings


def test_thumbnails_borders_and_placeholders(tmp_path):
    report, samples, images = fabricated(tmp_path)
    page = Page(html_report.render_html(report, samples, thumbnail_size=64))
    sections = page.find("section", class_="dataset")
    assert len(sections) == 3  # samples for a dataset not in the report are not shown

    # Result figures in document order: two SOP queries (5 + 3 results), one EVIL query (2).
    figures = [(i, e) for i, e in enumerate(page.elements) if e[0] == "figure" and "result" in e[1].get("class", "")]
    expected = [r["relevant"] for name in ("SOP", EVIL) for s in samples[name] for r in s["results"]]
    assert [e[1]["data-relevant"] for _, e in figures] == ["true" if r else "false" for r in expected]
    for (index, _), relevant in zip(figures, expected):
        tag, attrs, _ = page.elements[index + 1]  # the thumbnail right inside the figure
        classes = attrs["class"].split()
        assert "thumb" in classes
        assert ("hit" in classes) == relevant and ("miss" in classes) == (not relevant)
    captions = [t for _, t in page.find("figcaption")]
    assert "#1 · 0.930" in captions[1] and "id 123" in captions[1]
    assert "#2 · 0.810" in captions[2] and "id 77" in captions[2]

    # Stylesheet: the hit class is green, the miss class red (as colours, not names).
    style = page.find("style")[0][1]
    colours = dict(re.findall(r"--(hit|miss):\s*#([0-9a-fA-F]{6})", style))
    assert is_green(tuple(bytes.fromhex(colours["hit"]))) and is_red(tuple(bytes.fromhex(colours["miss"])))
    assert re.search(r"\.thumb\.hit\s*{\s*border-color:\s*var\(--hit\)", style)
    assert re.search(r"\.thumb\.miss\s*{\s*border-color:\s*var\(--miss\)", style)

    placeholders = page.find("div", class_="placeholder")
    reasons = [attrs["title"] for attrs, _ in placeholders]
    assert len(placeholders) == 3
    assert any(r.startswith(images["missing"]) and "No such file" in r for r in reasons)
    assert any(r.startswith(images["corrupt"]) and "cannot identify image" in r for r in reasons)
    assert any(r.startswith(images["g1"]) and "outside the 200x150 image" in r for r in reasons)
    assert all("image unavailable" in t for _, t in placeholders)

    imgs = page.find("img")
    assert len(imgs) == (1 + 5) + (1 + 3) + (1 + 2) - 3  # query + results per sample, less the 3 placeholders
    by_path = {}
    for attrs, _ in imgs:
        thumbnail = decode_data_uri(attrs["src"])
        assert thumbnail.format == "JPEG"
        assert max(thumbnail.size) == 64 or thumbnail.size == (40, 40)
        by_path.setdefault(attrs["title"], []).append(thumbnail)
    assert by_path[images["g3"]][0].size == (14, 64)     # 64 x 300 kept its aspect
    assert by_path[images["g4"]][0].size == (40, 40)     # never enlarged
    q1_full, q1_crop = by_path[images["q1"]]
    assert q1_full.size == (64, 48)
    left, right = np.asarray(q1_full)[:, :24].mean(axis=(0, 1)), np.asarray(q1_full)[:, 40:].mean(axis=(0, 1))
    assert np.abs(left - BLUE).max() < 20 and np.abs(right - YELLOW).max() < 20
    assert q1_crop.size == (43, 64)  # the 100 x 150 crop
    assert np.abs(np.asarray(q1_crop).mean(axis=(0, 1)) - YELLOW).max() < 12


def test_charts_one_per_dataset_with_axes_and_legend(tmp_path):
    report, samples, _ = fabricated(tmp_path)
    report["datasets"][2]["curves"] = None  # a dataset without curves says so instead of drawing
    text = html_report.render_html(report, samples)
    page = Page(text)
    assert len(page.find("svg", class_="chart")) == 2
    assert "No P@k / R@k curves" in text
    chart = text[text.index("<svg"):text.index("</svg>")]
    chart_page = Page(chart)
    labels = [t.strip() for _, t in chart_page.find("text")]
    for tick in ("0%", "20%", "40%", "60%", "80%", "100%") + tuple(str(k) for k in range(1, 11)):
        assert tick in labels, tick
    assert "k (rank cut-off)" in labels and "percent" in labels
    assert {"P@k", "R@k", "HitRate@k"} <= set(labels)
    curves = report["datasets"][0]["curves"]
    for attrs, _ in chart_page.find("polyline", class_="series"):
        points = np.array([[float(v) for v in p.split(",")] for p in attrs["points"].split()])
        values = np.array(curves[attrs["data-series"]])
        assert len(points) == 10
        # x is affine in k, y affine in the value, and higher values are drawn higher (smaller y)
        slope_x, _ = np.polyfit(curves["k"], points[:, 0], 1)
        slope_y, intercept_y = np.polyfit(values, points[:, 1], 1)
        assert slope_x > 0 and slope_y < 0
        assert np.abs(points[:, 1] - (slope_y * values + intercept_y)).max() < 0.2
    titles = [t for _, t in chart_page.find("title")]
    assert "P@3 = 70.00%" in titles and "HitRate@10 = 100.00%" in titles


def test_only_data_uris_and_nothing_external(tmp_path):
    report, samples, _ = fabricated(tmp_path)
    text = html_report.render_html(report, samples)
    lowered = text.lower()
    for forbidden in ("http://", "https://", "file:", "//cdn", "<script", "<link", "@import", "url(", "@font-face"):
        assert forbidden not in lowered, forbidden
    page = Page(text)
    for tag, attrs, _ in page.elements:
        for key in ("src", "href", "srcset", "poster", "data", "action", "xlink:href"):
            if key in attrs:
                value = attrs[key]
                assert value.startswith("data:image/jpeg;base64,") or (key == "href" and value.startswith("#")), \
                    (tag, key, value[:60])
    csp = [attrs["content"] for attrs, _ in page.find("meta") if attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "img-src data:" in csp[0]


def test_broken_report_fields_do_not_raise(tmp_path):
    text = html_report.render_html({"datasets": [{"name": "bare"}, "not a dict", {"metrics": "x", "curves": {}}]},
                                   {"bare": [{"query": {"path": str(tmp_path / "nope.jpg")},
                                              "results": [{"path": None, "score": "high"}]}, "junk"]})
    page = Page(text)
    assert page.tables["leaderboard"][1] == ["bare"] + ["—"] * 5
    assert page.tables["leaderboard"][-1] == ["Average"] + ["—"] * 5
    assert len(page.find("div", class_="placeholder")) == 2
    with pytest.raises(ValueError, match="thumbnail_size"):
        html_report.render_html({}, {}, thumbnail_size=0)
    with pytest.raises(TypeError, match="report must be a dict"):
        html_report.render_html([], {})


def test_write_is_atomic_and_matches_render(tmp_path):
    report, samples, _ = fabricated(tmp_path)
    path = tmp_path / "out" / "report.html"
    html_report.write_html_report(path, report, samples)
    assert path.read_text(encoding="utf-8") == html_report.render_html(report, samples)
    report["title"] = "second run"
    html_report.write_html_report(str(path), report, samples)  # replaces the old page
    assert "<title>second run</title>" in path.read_text(encoding="utf-8")
    assert sorted(os.listdir(path.parent)) == ["report.html"]  # no .tmp left behind
    with pytest.raises(TypeError):
        html_report.write_html_report(path, None, samples)
    assert "<title>second run</title>" in path.read_text(encoding="utf-8")  # a failed render keeps the old page
    assert sorted(os.listdir(path.parent)) == ["report.html"]


# --------------------------------------------------------------------------- headless Chromium

# Runs before the page's Content-Security-Policy meta (policies apply to what follows
# them), records every error channel a page has, then writes the image and border
# facts into the DOM for --dump-dom to carry out.
PROBE = """<script>
(function () {
  var errors = [];
  function note(kind, detail) { errors.push(kind + ": " + detail); }
  window.addEventListener("error", function (event) {
    var target = event.target;
    if (target && target !== window && target.tagName) {
      note("load error", target.tagName + " " + String(target.src || target.href || "").slice(0, 80));
    } else {
      note("script error", event.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (event) { note("unhandled rejection", event.reason); });
  document.addEventListener("securitypolicyviolation", function (event) {
    note("CSP violation", event.violatedDirective + " " + event.blockedURI);
  });
  ["error", "warn"].forEach(function (level) {
    var original = console[level];
    console[level] = function () {
      note("console." + level, Array.prototype.join.call(arguments, " "));
      return original.apply(console, arguments);
    };
  });
  window.addEventListener("load", function () {
    setTimeout(function () {
      var images = Array.prototype.map.call(document.images, function (img) {
        return {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
                shown: img.getBoundingClientRect().width};
      });
      var results = Array.prototype.map.call(document.querySelectorAll("figure.result"), function (figure) {
        var thumb = figure.querySelector(".thumb");
        var style = getComputedStyle(thumb);
        return {relevant: figure.getAttribute("data-relevant"), border: style.borderTopColor,
                width: parseFloat(style.borderTopWidth)};
      });
      var charts = Array.prototype.map.call(document.querySelectorAll("svg.chart"), function (svg) {
        var box = svg.getBoundingClientRect();
        return [box.width, box.height, svg.querySelectorAll("polyline").length];
      });
      var out = document.createElement("pre");
      out.id = "pe-probe";
      out.textContent = JSON.stringify({errors: errors, images: images, results: results, charts: charts,
                                        scrollWidth: document.documentElement.scrollWidth});
      document.body.appendChild(out);
    }, 200);
  });
})();
</script>"""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def start_chromium(binary, profile, *arguments):
    """Starts headless Chromium offline (stdout/stderr to files beside the profile:
    three runs go in parallel and must not block on full pipes)."""
    command = [binary, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
               "--disable-background-networking", "--disable-component-update", "--mute-audio",
               "--host-resolver-rules=MAP * ~NOTFOUND",  # offline even where a network exists
               "--enable-logging=stderr", "--v=0", *arguments]
    stdout, stderr = open(f"{profile}.out", "w+"), open(f"{profile}.err", "w+")
    return subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True), stdout, stderr


def finish_chromium(run):
    """(stdout, console lines from Chromium's log) of a run from start_chromium."""
    process, stdout, stderr = run
    try:
        process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stdout.seek(0)
    stderr.seek(0)
    out, log = stdout.read(), stderr.read()
    stdout.close()
    stderr.close()
    assert process.returncode == 0, f"chromium failed ({process.returncode}): {log[-2000:]}"
    return out, [line for line in log.splitlines() if re.search(r":CONSOLE[(:]\d*\)?\]", line)]


HEAD = '<head><meta charset="utf-8">'
WINDOW = (1280, 900)  # a laptop screen


def start_probe(binary, tmp_path, name, page_text):
    """Loads page_text with PROBE injected right after the charset, before anything
    else in <head>."""
    assert page_text.count(HEAD) == 1
    path = tmp_path / f"{name}.html"
    path.write_text(page_text.replace(HEAD, HEAD + PROBE, 1), encoding="utf-8")
    return start_chromium(binary, tmp_path / f"profile-{name}", "--virtual-time-budget=5000",
                          f"--window-size={WINDOW[0]},{WINDOW[1]}", "--dump-dom", path.as_uri())


def finish_probe(run):
    """The probe's findings and the console lines of a run from start_probe."""
    dom, console = finish_chromium(run)
    found = re.search(r'<pre id="pe-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not report (it must run before the page's CSP); DOM tail: {dom[-500:]}"
    return json.loads(html.unescape(found.group(1))), console


def css_rgb(value):
    numbers = re.match(r"rgba?\((\d+),\s*(\d+),\s*(\d+)", value)
    assert numbers, value
    return tuple(int(n) for n in numbers.groups())


def test_page_in_headless_chromium(tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not found on PATH; install Debian's chromium (scripts/bootstrap.sh does)")
    started = time.monotonic()
    report, samples, _ = fabricated(tmp_path)
    page_path = tmp_path / "report.html"
    html_report.write_html_report(page_path, report, samples, thumbnail_size=64)
    text = page_path.read_text(encoding="utf-8")
    expected_images = len(Page(text).find("img"))

    # The probe itself must see each kind of failure, or its silence below proves nothing.
    control = ('<!DOCTYPE html><html>' + HEAD + '<meta http-equiv="Content-Security-Policy" '
               "content=\"default-src 'none'; img-src data:; script-src 'unsafe-inline'\"></head><body>"
               '<img src="missing.png"><img src="https://example.invalid/a.png">'
               f'<img src="{first_data_uri(text)}">'
               '<script>console.error("boom"); throw new Error("thrown")</script></body></html>')
    # Three browsers at once (they spend most of their time starting up).
    shot = tmp_path / "shot.png"
    runs = {"control": start_probe(binary, tmp_path, "control", control),
            "report": start_probe(binary, tmp_path, "report", text),
            # The page as written (no probe), for a screenshot.
            "shot": start_chromium(binary, tmp_path / "profile-shot", "--hide-scrollbars", "--window-size=1280,2200",
                                   f"--screenshot={shot}", page_path.as_uri())}
    results = {}
    try:
        for name in ("control", "report"):
            results[name] = finish_probe(runs.pop(name))
        finish_chromium(runs.pop("shot"))
    finally:
        for process, stdout, stderr in runs.values():  # after a failure above, leave no browser behind
            process.kill()
            process.wait()
            stdout.close()
            stderr.close()

    found, console = results["control"]
    errors = " | ".join(found["errors"])
    assert "console.error: boom" in errors and "thrown" in errors and "CSP violation: img-src" in errors, errors
    assert [image["width"] > 0 for image in found["images"]] == [False, False, True]
    assert any('"boom"' in line for line in console), console

    found, console = results["report"]
    assert found["errors"] == [] and console == [], (found["errors"], console)
    assert len(found["images"]) == expected_images > 0
    for image in found["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0 and image["shown"] > 0, image
    relevant = [r["relevant"] for r in found["results"]]
    assert relevant.count("true") >= 3 and relevant.count("false") >= 3
    for result in found["results"]:
        colour = css_rgb(result["border"])
        assert result["width"] >= 2
        assert (is_green(colour) if result["relevant"] == "true" else is_red(colour)), result
    assert len(found["charts"]) == 3 and all(w > 300 and h > 150 and lines == 3 for w, h, lines in found["charts"])
    assert found["scrollWidth"] <= WINDOW[0], "the page should fit a laptop screen without scrolling sideways"

    # The screenshot shows content, including the green and red borders.
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1280, 2200)
        pixels = np.asarray(image.convert("RGB")).astype(np.int64)
    flat = pixels.reshape(-1, 3)
    packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    assert flat.std() > 20 and len(np.unique(packed)) > 200, "blank screenshot"
    below_header = pixels[400:]  # past the red random-weights notice: only borders are green or red there
    r, g, b = below_header[..., 0], below_header[..., 1], below_header[..., 2]
    assert np.count_nonzero((g > 90) & (g > r + 50) & (g > b + 30)) > 500  # hit borders
    assert np.count_nonzero((r > 150) & (r > g + 80) & (r > b + 80)) > 500  # miss borders
    print(f"chromium check: {time.monotonic() - started:.1f} s")


def first_data_uri(text):
    """The first data URI in the page: a known-good image for the control page."""
    return re.search(r'src="(data:image/jpeg;base64,[^"]+)"', text).group(1)
