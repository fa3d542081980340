"""Pages a person reads, rendered in a real headless browser."""

from __future__ import annotations

from html.parser import HTMLParser

from tests.browser import render
from tests.helpers import approve, create_group, register


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        if tag == "section" and "data-version" in d:
            self.sections.append(d["data-version"])

    def handle_data(self, data):
        self.text.append(data)


def test_compliance_report_renders_in_chromium(client, keys, tmp_path):
    create_group(client, keys("publisher"), "churn")
    register(client, keys("publisher"), "churn", 1, training_data=["s3://data/train.csv"])
    register(client, keys("publisher"), "churn", 2)
    approve(client, keys("approver"), "churn", 1, comment="holdout AUC <b>0.91</b>")
    html = client.get("/api/v1/audit/report", params={"model_group": "churn", "format": "html"},
                      headers=keys("viewer")).text
    dom, shot = render(html, tmp_path)
    p = _Text()
    p.feed(dom)
    text = " ".join(" ".join(p.text).split())
    assert p.sections == ["1", "2"]
    assert "Audit chain: intact" in text
    assert "PendingManualApproval → Approved" in text and "test-approver" in text
    assert "holdout AUC <b>0.91</b>" in text          # user text is escaped, not interpreted as markup
    assert "s3://data/train.csv" in text              # upstream lineage section
    assert shot.stat().st_size > 5000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
