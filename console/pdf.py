"""HTML → PDF with headless Chromium (``chromium --headless --print-to-pdf``): the same engine the pages are tested
in, so the PDF shows what the browser shows. The page is a local file with everything inline (the compliance report
embeds its stylesheet and has no script; every value in it is autoescaped), so printing fetches nothing.
(``--blink-settings=scriptEnabled=false`` would be a second guard, but Chromium 156 then writes no PDF at all.)"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from mlgov.errors import DomainError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


class PdfUnavailable(DomainError):
    status, title = 503, "PDF rendering unavailable"


def chromium() -> str:
    for name in BROWSERS:
        if exe := shutil.which(name):
            return exe
    raise PdfUnavailable("PDF download needs Chromium on the server, and none was found",
                         fix="install it (Debian: apt-get install chromium), or download the HTML report and print it")


def html_to_pdf(html: str, *, timeout_s: float = 120) -> bytes:
    exe = chromium()
    with tempfile.TemporaryDirectory(prefix="mlgov-pdf-") as tmp:
        src, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        src.write_text(html, encoding="utf-8")
        try:
            run = subprocess.run([exe, *FLAGS, f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}",
                                  src.as_uri()], capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise PdfUnavailable(f"Chromium did not finish the PDF within {timeout_s:.0f} s",
                                 fix="retry when the server is less busy, or download the HTML report") from None
        if run.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            raise PdfUnavailable(f"Chromium could not print the report (exit {run.returncode})",
                                 fix="download the HTML report instead; the server log has Chromium's message")
        return out.read_bytes()
