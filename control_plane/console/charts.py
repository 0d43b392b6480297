"""Charts drawn on the server as SVG: nothing to download, nothing to run in the browser,
and every data point is an element a test (or a screen reader, through its <title>) can
find. Three kinds: lines over time, intervals per arm, and a heat map."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#4b5563")
W, H = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40


def _svg(body: list[str], label: str, width: int = W, height: int = H) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>")


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= n:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.2g}"


LAST_MS = 253_402_300_799_000  # 9999-12-31 23:59:59 UTC, the last moment datetime names

def time_series(series: dict[str, Sequence[tuple[int, float]]], label: str,
                unit: str = "") -> Markup:
    """Lines over time: `series` maps a name to (ts_ms, value) points, oldest first."""
    # a point no calendar can name (a store written before ingest refused far-future
    # timestamps) is left out rather than failing the page
    series = {name: [p for p in pts if 0 <= p[0] <= LAST_MS] for name, pts in series.items()}
    points = [p for pts in series.values() for p in pts]
    if not points:
        return Markup('<p class="empty">No data in this period.</p>')
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    t1 = max(t1, t0 + 1)
    vmax = max(max(p[1] for p in points), 1)
    x = lambda t: LEFT + (t - t0) / (t1 - t0) * (W - LEFT - RIGHT)
    y = lambda v: H - BOTTOM - v / vmax * (H - TOP - BOTTOM)
    axis = f'<line class="axis" x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}"/>'
    body = [axis]
    for v in _ticks(0, vmax):
        body.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" '
                    f'y2="{y(v):.1f}"/><text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" '
                    f'text-anchor="end">{_num(v)}</text>')
    for i in range(5):
        t = t0 + (t1 - t0) * i / 4
        stamp = datetime.fromtimestamp(t / 1000, UTC).strftime("%d %b %H:%M")
        # the outer labels align with the plot's edges, so the last is not cut off
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        body.append(f'<text class="tick" x="{x(t):.1f}" y="{H - BOTTOM + 16}" '
                    f'text-anchor="{anchor}">{stamp}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                    f'points="{path}"/>')
        for t, v in pts:
            when = datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            body.append(f'<circle class="point" data-series="{escape(name)}" data-value="{v:g}" '
                        f'cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.2" fill="{color}">'
                        f'<title>{escape(name)} {when} UTC: {v:g}{unit}</title></circle>')
        body.append(f'<text class="legend" x="{LEFT + 8 + 130 * i}" y="{H - 6}" '
                    f'fill="{color}">■ {escape(name)}</text>')
    return _svg(body, label)


def intervals(rows: Sequence[tuple[str, float | None, float | None, float | None]],
              label: str, percent: bool = True) -> Markup:
    """One row per arm: (name, estimate, low, high) drawn as a point with its interval."""
    drawn = [r for r in rows if r[1] is not None]
    if not drawn:
        return Markup('<p class="empty">Not enough sessions for an interval yet.</p>')
    lo = min(min(r[2] if r[2] is not None else r[1] for r in drawn), 0)
    hi = max(max(r[3] if r[3] is not None else r[1] for r in drawn), 1e-9)
    row_h, height = 34, TOP + BOTTOM + 34 * len(rows)
    x = lambda v: 140 + (v - lo) / (hi - lo) * (W - 140 - RIGHT)
    fmt = (lambda v: f"{v * 100:.1f} %") if percent else (lambda v: f"{v:.3g}")
    body = []
    for v in _ticks(lo, hi):
        body.append(f'<line class="grid" x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{TOP}" '
                    f'y2="{height - BOTTOM}"/><text class="tick" x="{x(v):.1f}" '
                    f'y="{height - BOTTOM + 16}" text-anchor="middle">{fmt(v)}</text>')
    for i, (name, est, low, high) in enumerate(rows):
        cy = TOP + row_h * i + row_h / 2
        color = PALETTE[i % len(PALETTE)]
        body.append(f'<text class="label" x="8" y="{cy + 4:.1f}">{escape(name)}</text>')
        if est is None:
            body.append(f'<text class="tick" x="140" y="{cy + 4:.1f}">no data</text>')
            continue
        if low is not None and high is not None:
            body.append(f'<line stroke="{color}" stroke-width="2" x1="{x(low):.1f}" '
                        f'x2="{x(high):.1f}" y1="{cy:.1f}" y2="{cy:.1f}"/>')
        span = f" ({fmt(low)} to {fmt(high)})" if low is not None and high is not None else ""
        body.append(f'<circle class="point" data-series="{escape(name)}" data-value="{est:g}" '
                    f'cx="{x(est):.1f}" cy="{cy:.1f}" r="4" fill="{color}">'
                    f'<title>{escape(name)}: {fmt(est)}{span}</title></circle>')
    return _svg(body, label, W, height)


def _cut(name: str, most: int = 80) -> str:
    """A name as a cell's tooltip shows it: a matrix repeats each name 2N times, and
    telemetry's made-up trigger names run to thousands of characters."""
    return name if len(name) <= most else name[:most - 1] + "…"


def heat_map(names: Sequence[str], value: dict[tuple[str, str], float | None],
             label: str) -> Markup:
    """A symmetric matrix (e.g. correlations, -1..1) as coloured cells."""
    if not names:
        return Markup('<p class="empty">No triggers with enough sessions yet.</p>')
    cell, pad = 28, 150
    size = pad + cell * len(names) + 8
    body = []
    for i, a in enumerate(names):
        body.append(f'<text class="label" x="{pad - 6}" y="{pad + cell * i + 18}" '
                    f'text-anchor="end">{escape(a[:22])}</text>')
        body.append(f'<text class="label" transform="translate({pad + cell * i + 18},'
                    f'{pad - 6}) rotate(-60)">{escape(a[:22])}</text>')
        for j, b in enumerate(names):
            v = value.get((a, b))
            if v is None:
                fill, shown = "#e5e7eb", "n/a"
            else:
                strength = min(abs(v), 1.0)
                hue = "37,99,235" if v >= 0 else "220,38,38"
                fill, shown = f"rgba({hue},{0.1 + 0.9 * strength:.2f})", f"{v:.2f}"
            body.append(f'<rect class="point" data-value="{shown}" x="{pad + cell * j}" '
                        f'y="{pad + cell * i}" width="{cell - 2}" height="{cell - 2}" '
                        f'fill="{fill}"><title>{escape(_cut(a))} × {escape(_cut(b))}: {shown}'
                        '</title></rect>')
    return _svg(body, label, size, size)
