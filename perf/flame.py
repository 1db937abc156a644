#!/usr/bin/env python3
"""Folded stacks and a flamegraph SVG from `perf script` output, standard library only.

    perf script -i perf.data | perf/flame.py --title "ringgate" > out.svg
    perf/flame.py --folded < script.txt > out.folded      # only the folded stacks

Each sample becomes `thread;outermost;...;innermost count`; the SVG is the usual flamegraph
(root at the bottom, width = share of samples, hover for the numbers).
"""

import argparse
import collections
import html
import re
import sys
import zlib

OFFSET = re.compile(r"\+0x[0-9a-f]+$")


def fold(lines):
    """Parse `perf script` text into a Counter of folded stacks."""
    stacks = collections.Counter()
    comm, frames = None, []

    def flush():
        if comm is not None and frames:
            stacks[";".join([comm] + frames[::-1])] += 1

    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            flush()
            comm, frames = None, []
        elif not line[0].isspace():
            flush()
            comm, frames = line.split(None, 1)[0].replace(";", ":"), []
        else:
            parts = line.strip().split(None, 1)
            sym = parts[1] if len(parts) > 1 else parts[0]
            sym = re.sub(r" \([^()]*\)$", "", sym)  # the DSO
            sym = OFFSET.sub("", sym)
            if sym == "[unknown]" and len(parts) > 1:
                dso = re.search(r"\(([^()]*)\)$", parts[1])
                sym = f"[{dso.group(1).rsplit('/', 1)[-1]}]" if dso else sym
            frames.append(sym.replace(";", ":"))
    flush()
    return stacks


def svg(stacks, title, width=1200, row=16):
    """Render folded stacks as a flamegraph."""
    root = {"n": 0, "kids": {}}
    for stack, count in stacks.items():
        node = root
        node["n"] += count
        for frame in stack.split(";"):
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    total = root["n"] or 1

    def depth(node):
        return 1 + max((depth(k) for k in node["kids"].values()), default=0)

    levels = depth(root)
    height = (levels + 3) * row
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" '
        f'font-size="11">',
        f'<rect width="100%" height="100%" fill="#f8f8f8"/>',
        f'<text x="{width / 2}" y="{row}" text-anchor="middle" font-size="14">{html.escape(title)} '
        f"({total} samples)</text>",
    ]
    scale = (width - 20) / total

    def draw(name, node, x, level):
        w = node["n"] * scale
        if w < 0.3:
            return
        y = height - (level + 1) * row
        h = zlib.crc32(name.encode())
        color = f"rgb({205 + h % 50},{80 + (h >> 8) % 120},{(h >> 16) % 60})"
        pct = 100 * node["n"] / total
        label = html.escape(name)
        out.append(f'<g><title>{label} ({node["n"]} samples, {pct:.2f}%)</title>'
                   f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="{color}" rx="2"/>')
        chars = int(w / 7)
        if chars >= 3:
            text = name if len(name) <= chars else name[: chars - 2] + ".."
            out.append(f'<text x="{x + 3:.1f}" y="{y + row - 4}">{html.escape(text)}</text>')
        out.append("</g>")
        for kname, kid in sorted(node["kids"].items()):
            draw(kname, kid, x, level + 1)
            x += kid["n"] * scale

    x = 10.0
    for name, kid in sorted(root["kids"].items()):
        draw(name, kid, x, 0)
        x += kid["n"] * scale
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--title", default="flamegraph")
    ap.add_argument("--folded", action="store_true", help="print the folded stacks instead of an SVG")
    args = ap.parse_args()
    stacks = fold(sys.stdin)
    if not stacks:
        sys.exit("flame.py: no samples in the input")
    if args.folded:
        for stack, n in sorted(stacks.items()):
            print(f"{stack} {n}")
    else:
        sys.stdout.write(svg(stacks, args.title))


if __name__ == "__main__":
    main()
