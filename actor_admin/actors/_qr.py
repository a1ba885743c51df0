"""QR payload → SVG for the connect page: one vector path, so it stays crisp at any zoom.

qrcode's own SVG factories draw one square per module (≈25 KB for a WhatsApp QR); drawing each
horizontal run of dark modules as one rectangle gives the same picture in about a fifth of that,
which matters when every viewer of every salon receives a new QR every 20 seconds.

The mask pattern is fixed instead of searched: the search renders the code eight times (≈12 ms
against ≈3 ms here) and any of the eight masks is valid for every reader; the search only picks the
one with the fewest hard-to-read patterns, which the quiet, high-contrast SVG does not need.
"""

from __future__ import annotations

import qrcode
import qrcode.constants


def render_qr_svg(payload: str, *, border: int = 2) -> str:
    """Render ``payload`` as a standalone SVG document sized by its viewBox only."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_L, border=border, mask_pattern=2)
    qr.add_data(payload)
    qr.make(fit=True)
    matrix = qr.get_matrix()  # includes the border
    size = len(matrix)
    parts: list[str] = []
    for y, row in enumerate(matrix):
        x = 0
        while x < size:
            if row[x]:
                start = x
                while x < size and row[x]:
                    x += 1
                parts.append(f"M{start} {y}h{x - start}v1h{start - x}z")
            else:
                x += 1
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" shape-rendering="crispEdges">'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(parts)}"/></svg>'
    )
