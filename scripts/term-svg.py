#!/usr/bin/env python3
"""Draws terminal output (text with ANSI colour codes, as a program wrote it
to a terminal) as an SVG image, line for line and in the colours the
terminal would show, so a README can show a real run of a command.

    term-svg.py "$ parasol instances top --once" < captured.txt > top.svg

The first argument, if given, is drawn as the command line above the output.
Only the SGR codes Parasol's CLI writes are understood (bold, dim, red,
green, yellow, reset); carriage returns and other escapes are dropped.
"""

import html
import re
import sys

COLOURS = {"31": "#ff6b6b", "32": "#5fd38d", "33": "#f2c14e"}
FG, BG, DIM = "#e4e9f2", "#18202f", "#8a93a3"
CHAR_W, LINE_H, PAD, FONT = 8.4, 19, 16, 14
NBSP = "\u00a0"
SGR = re.compile(r"\x1b\[([0-9;]*)m")
OTHER = re.compile(r"\x1b\[[0-9;?]*[A-Za-ln-z]")


def spans(line):
    """(text, fill, bold) runs of one line."""
    fill, bold, out, pos = FG, False, [], 0
    for m in SGR.finditer(line):
        if m.start() > pos:
            out.append((line[pos:m.start()], fill, bold))
        for code in (m.group(1) or "0").split(";"):
            if code in ("0", ""):
                fill, bold = FG, False
            elif code == "1":
                bold = True
            elif code == "2":
                fill = DIM
            elif code in COLOURS:
                fill = COLOURS[code]
        pos = m.end()
    if pos < len(line):
        out.append((line[pos:], fill, bold))
    return out


def main():
    text = sys.stdin.read().replace("\r\n", "\n").replace("\r", "")
    lines = [OTHER.sub("", l) for l in text.rstrip("\n").split("\n")]
    if len(sys.argv) > 1:
        lines = ["\x1b[2m" + sys.argv[1] + "\x1b[0m", ""] + lines
    width = max(len(SGR.sub("", l)) for l in lines)
    w = int(PAD * 2 + width * CHAR_W)
    h = int(PAD * 2 + len(lines) * LINE_H)
    print(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">')
    print(f'<rect width="{w}" height="{h}" rx="6" fill="{BG}"/>')
    # Spaces are drawn as no-break spaces: renderers collapse runs of
    # ordinary ones whatever xml:space says, which breaks the columns.
    print(f'<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT}">')
    for n, line in enumerate(lines):
        y = PAD + (n + 1) * LINE_H - 5
        col = 0
        for text, fill, bold in spans(line):
            weight = ' font-weight="bold"' if bold else ""
            x = PAD + col * CHAR_W
            shown = html.escape(text).replace(" ", NBSP)
            print(f'<text x="{x:.1f}" y="{y}" fill="{fill}"{weight}>{shown}</text>')
            col += len(text)
    print("</g></svg>")


if __name__ == "__main__":
    main()
