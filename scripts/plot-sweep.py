#!/usr/bin/env python3
"""Draws latency against throughput from scripts/bench-sweep.sh's CSV as an SVG.

    scripts/plot-sweep.py SWEEP_CSV OUT_SVG

One point per offered rate (the `curve` rows), joined in the order the rates were offered:
achieved puts/s across, average and p99 latency up, one colour per system. Standard library only, so it runs wherever the sweep does.
"""

import csv
import sys

WIDTH, HEIGHT = 760, 460
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 60
COLOURS = {"etcd": "#d95f02", "oxcd": "#1b9e77"}


def nice_step(span):
    """A round tick step giving about five ticks over span."""
    raw = span / 5
    mag = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def ticks(vmax):
    """Tick values from 0 to vmax at a round step."""
    step = nice_step(vmax)
    return [i * step for i in range(int(vmax // step) + 1)]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot-sweep.py SWEEP_CSV OUT_SVG")
    series = {}
    with open(sys.argv[1]) as f:
        for row in csv.DictReader(f):
            if row["sweep"] != "curve" or not row["reqs_per_sec"]:
                continue
            pts = series.setdefault(row["system"], [])
            offered = float(row["rate"]) or float("inf")  # 0: as fast as the clients go
            pts.append((float(row["reqs_per_sec"]), float(row["avg_ms"]), float(row["p99_ms"]), offered))
    if not series:
        sys.exit("plot-sweep: no curve rows in " + sys.argv[1])
    # In the order the load was offered: past saturation the achieved rate wobbles, and the
    # line should show that rather than zigzag.
    for pts in series.values():
        pts.sort(key=lambda p: p[3])
    xmax = max(p[0] for pts in series.values() for p in pts) * 1.05
    ymax = max(p[2] for pts in series.values() for p in pts) * 1.1
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(v):
        return LEFT + v / xmax * pw

    def y(v):
        return TOP + ph - v / ymax * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">Put latency against throughput '
        "(3 members, 100 clients, 256-byte values)</text>",
    ]
    for v in ticks(xmax):
        out.append(f'<line x1="{x(v):.1f}" y1="{TOP}" x2="{x(v):.1f}" y2="{TOP + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x(v):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{v:g}</text>')
    for v in ticks(ymax):
        out.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + pw}" y2="{y(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{HEIGHT - 18}" text-anchor="middle">puts/s achieved</text>')
    out.append(
        f'<text transform="translate(18 {TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
        "latency, ms</text>"
    )
    legend_y = TOP + 10
    for name in sorted(series):
        pts, colour = series[name], COLOURS.get(name, "#7570b3")
        for idx, dash, label in ((2, "", "p99"), (1, ' stroke-dasharray="5 4"', "average")):
            path = " ".join(f"{x(p[0]):.1f},{y(p[idx]):.1f}" for p in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            for p in pts:
                out.append(f'<circle cx="{x(p[0]):.1f}" cy="{y(p[idx]):.1f}" r="3" fill="{colour}"/>')
            lx = LEFT + pw + 14
            out.append(f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 26}" y2="{legend_y}" '
                       f'stroke="{colour}" stroke-width="2"{dash}/>')
            out.append(f'<text x="{lx + 32}" y="{legend_y + 4}">{name} {label}</text>')
            legend_y += 20
    out.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
