"""Draws the participant app's icons (SVG and PNG) from one geometry: four mosaic
tiles on the dashboard's blue. Pure Python (zlib), so no imaging library is needed;
run it again after changing the geometry:

    python services/enrolment/tools/app_icons.py
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "src" / "tessera_enrolment" / "participant_app" / "icons"
BLUE, WHITE, AMBER = (0x2F, 0x6F, 0xB2), (0xFF, 0xFF, 0xFF), (0xF2, 0xB1, 0x3C)
#: On a 100-unit canvas: (x, y, size, colour) of each tile.
TILES = [(22, 22, 26, AMBER), (52, 22, 26, WHITE), (22, 52, 26, WHITE), (52, 52, 26, WHITE)]
CORNER = 18  # the background's corner radius (none on a maskable icon: the platform shapes it)


def hexa(colour: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{part:02x}" for part in colour)


def svg() -> str:
    tiles = "".join(f'<rect x="{x}" y="{y}" width="{s}" height="{s}" rx="3" fill="{hexa(c)}"/>' for x, y, s, c in TILES)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">'
            f'<rect width="100" height="100" rx="{CORNER}" fill="{hexa(BLUE)}"/>{tiles}</svg>\n')


def inside_rounded(u: float, v: float, radius: float) -> bool:
    cx = min(max(u, radius), 100 - radius)
    cy = min(max(v, radius), 100 - radius)
    return (u - cx) ** 2 + (v - cy) ** 2 <= radius ** 2


def png(size: int, maskable: bool = False) -> bytes:
    scale = 100 / size
    # A maskable icon keeps its content inside the central 80% (the platform's safe zone).
    shrink, offset = (0.8, 10) if maskable else (1.0, 0)
    rows = []
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            u, v = (x + 0.5) * scale, (y + 0.5) * scale
            colour, alpha = BLUE, 255
            if not maskable and not inside_rounded(u, v, CORNER):
                colour, alpha = (0, 0, 0), 0
            tu, tv = (u - offset) / shrink, (v - offset) / shrink
            for tx, ty, ts, tc in TILES:
                if tx <= tu < tx + ts and ty <= tv < ty + ts:
                    colour = tc
            row += bytes((*colour, alpha))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
            + chunk(b"IEND", b""))


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    (ICONS / "icon.svg").write_text(svg())
    (ICONS / "icon-192.png").write_bytes(png(192))
    (ICONS / "icon-512.png").write_bytes(png(512))
    (ICONS / "icon-maskable-512.png").write_bytes(png(512, maskable=True))


if __name__ == "__main__":
    main()
