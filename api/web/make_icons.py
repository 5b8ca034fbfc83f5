"""Draw the phone app's icons (api/web/app/icons/): `python api/web/make_icons.py`.

A development tool, not part of the running device: the PNGs and the SVG it writes are
committed and shipped as package data. Pillow comes with the dev extra. One drawing, in units
of a 512 square, for the SVG and the PNGs (drawn 4x larger and scaled down for smooth edges);
the maskable icon keeps the drawing inside the central circle a launcher may crop to.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ICONS = Path(__file__).resolve().parent / "app" / "icons"
BLUE = "#0b3d91"
RED = "#e8283c"
WHITE = "#ffffff"
#: (cx, cy, r) of the heads and (x0, y0, x1, y1, corner) of the bodies: three people waiting.
HEADS = ((166, 236, 42), (256, 196, 50), (346, 236, 42))
BODIES = ((112, 292, 220, 420, 54), (192, 258, 320, 420, 64), (292, 292, 400, 420, 54))
ALERT = (398, 118, 58)  # the red dot: something needs you
GAP = 12  # blue between the person in front and the two behind


def draw_png(size: int, *, maskable: bool) -> Image.Image:
    scale = 4
    big = size * scale
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    unit = big / 512
    if maskable:
        draw.rectangle((0, 0, big, big), fill=BLUE)
        # The safe zone is the central circle of 80% the width: shrink the drawing into it.
        shrink, offset = 0.72, 512 * 0.14
    else:
        draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=round(96 * unit), fill=BLUE)
        shrink, offset = 1.0, 0.0

    def at(value: float) -> float:
        return (offset + value * shrink) * unit

    gap = round(GAP * shrink * unit)
    # The one in front last, with a blue outline, so the three read as three people.
    order = (0, 2, 1)
    for (cx, cy, r), (x0, y0, x1, y1, corner) in ((HEADS[i], BODIES[i]) for i in order):
        front = (cx, cy, r) == HEADS[1]
        if front:
            draw.rounded_rectangle(
                (at(x0) - gap, at(y0) - gap, at(x1) + gap, at(y1) + gap),
                radius=round(corner * shrink * unit) + gap, fill=BLUE,
            )  # fmt: skip
        draw.rounded_rectangle(
            (at(x0), at(y0), at(x1), at(y1)), radius=round(corner * shrink * unit), fill=WHITE
        )
        head = (at(cx - r), at(cy - r), at(cx + r), at(cy + r))
        draw.ellipse(head, fill=WHITE, outline=BLUE if front else None, width=gap if front else 0)
    cx, cy, r = ALERT
    ring = 16
    draw.ellipse((at(cx - r - ring), at(cy - r - ring), at(cx + r + ring), at(cy + r + ring)),
                 fill=BLUE)  # fmt: skip
    draw.ellipse((at(cx - r), at(cy - r), at(cx + r), at(cy + r)), fill=RED)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def svg() -> str:
    people = []
    for i in (0, 2, 1):  # the one in front last, set off by a blue outline
        (x, y, r), (x0, y0, x1, y1, c) = HEADS[i], BODIES[i]
        edge = f' stroke="{BLUE}" stroke-width="{2 * GAP}" paint-order="stroke"' if i == 1 else ""
        people.append(
            f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" rx="{c}"{edge}/>'
            f'<circle cx="{x}" cy="{y}" r="{r}"{edge}/>'
        )
    cx, cy, r = ALERT
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512">'
        f'<rect width="512" height="512" rx="96" fill="{BLUE}"/>'
        f'<g fill="{WHITE}">{"".join(people)}</g>'
        f'<circle cx="{cx}" cy="{cy}" r="{r + 16}" fill="{BLUE}"/>'
        f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="{RED}"/>'
        "</svg>\n"
    )


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    draw_png(192, maskable=False).save(ICONS / "icon-192.png", optimize=True)
    draw_png(512, maskable=False).save(ICONS / "icon-512.png", optimize=True)
    draw_png(512, maskable=True).save(ICONS / "icon-maskable-512.png", optimize=True)
    (ICONS / "icon.svg").write_text(svg(), encoding="utf-8")
    print(f"icons written to {ICONS}")


if __name__ == "__main__":
    main()
