"""Tiny WMF and EMF files written record by record, for tests (no sample files to ship)."""

import struct

def emf(width=200, height=120, color=(200, 30, 30)):
    """Minimal EMF: header, a solid brush, a filled rectangle, EOF."""
    recs = []
    brush = struct.pack("<IIIIII", 39, 24, 1, 0, color[0] | color[1] << 8 | color[2] << 16, 0)  # CREATEBRUSHINDIRECT
    select = struct.pack("<III", 37, 12, 1)  # SELECTOBJECT
    rect = struct.pack("<IIiiii", 43, 24, 10, 10, width - 10, height - 10)  # RECTANGLE
    eof = struct.pack("<IIIII", 14, 20, 0, 16, 20)
    body = brush + select + rect + eof
    size = 88 + len(body)
    header = struct.pack("<II", 1, 88) + struct.pack("<iiii", 0, 0, width - 1, height - 1) \
        + struct.pack("<iiii", 0, 0, width * 26, height * 26) + struct.pack("<II", 0x464D4520, 0x10000) \
        + struct.pack("<IIHHIII", size, 5, 2, 0, 0, 0, 0) + struct.pack("<iiii", 1024, 768, 270, 203)
    return header + body

def wmf(width=200, height=120, color=(30, 30, 200)):
    """Minimal placeable WMF: brush, select, rectangle, EOF."""
    def rec(func, *words):
        return struct.pack("<IH", 3 + len(words), func) + struct.pack(f"<{len(words)}h", *words)
    cr = color[0] | color[1] << 8 | color[2] << 16
    records = (rec(0x020B, 0, 0) + rec(0x020C, height, width)  # SETWINDOWORG, SETWINDOWEXT
               + struct.pack("<IHHIH", 7, 0x02FC, 0, cr, 0)  # CREATEBRUSHINDIRECT (style, colorref, hatch)
               + rec(0x012D, 0) + rec(0x041B, height - 10, width - 10, 10, 10) + rec(0x0000))
    words = len(records) // 2
    header = struct.pack("<HHHIHI", 1, 9, 0x300, 9 + words, 1, 7) + struct.pack("<H", 0)
    placeable = struct.pack("<IHhhhhHI", 0x9AC6CDD7, 0, 0, 0, width, height, 96, 0)
    checksum = 0
    for (w,) in struct.iter_unpack("<H", placeable[:20]):
        checksum ^= w
    placeable = placeable[:20] + struct.pack("<H", checksum)
    return placeable + header + records
