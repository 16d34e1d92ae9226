"""Reading a PDF back for tests: the text of each page (pdfium, fast) and a page as pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pypdfium2


def page_texts(path: Path) -> list[str]:
    """Each page's text, lines joined with \\n."""
    document = pypdfium2.PdfDocument(path)
    try:
        return [
            document[i].get_textpage().get_text_bounded().replace("\r\n", "\n")
            for i in range(len(document))
        ]
    finally:
        document.close()


def page_pixels(path: Path, index: int = 0) -> tuple[tuple[float, float], np.ndarray]:
    """A page's size in points and its RGB pixels at 72 dpi."""
    document = pypdfium2.PdfDocument(path)
    try:
        page = document[index]
        size = (page.get_width(), page.get_height())
        return size, np.asarray(page.render(scale=1).to_pil().convert("RGB"))
    finally:
        document.close()
