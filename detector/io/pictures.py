"""The picture of one image's detections: labelled boxes drawn with OpenCV, as PNG bytes (what
``detect --out`` writes through the output rule, and the report page shows)."""

from __future__ import annotations

import cv2

from backbone.errors import UserError

#: box colours by label (BGR), repeating after seven classes
PALETTE = [(0, 0, 255), (255, 128, 0), (0, 200, 0), (200, 0, 200), (0, 200, 200), (255, 0, 0), (128, 128, 0)]


def picture(image, det) -> bytes:
    """``image`` ((H, W, 3) uint8 RGB) with ``det``'s labelled boxes (the highest score on top), PNG."""
    img = image[:, :, ::-1].copy()
    for b, s, l in sorted(zip(det.boxes, det.scores, det.labels), key=lambda t: t[1]):
        color = PALETTE[(int(l) - 1) % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), color, 2)
        text = f"{det.classes[int(l) - 1]} {s:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + 4)
        cv2.rectangle(img, (x1, ty - th - 4), (x1 + tw + 2, ty), color, -1)
        cv2.putText(img, text, (x1 + 1, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise UserError("cannot encode the picture as PNG")
    return buf.tobytes()
