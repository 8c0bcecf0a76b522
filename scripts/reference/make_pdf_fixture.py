#!/usr/bin/env python3
"""Writes tests/fixtures/docs/probes.pdf: a two-page PDF made by an independent producer (fpdf2)
for the PDF extraction tests. The sentences below are what the tests expect to read back.

    python3 -m venv .venv-ref && .venv-ref/bin/pip install fpdf2==2.8.9
    .venv-ref/bin/python scripts/reference/make_pdf_fixture.py
"""

import datetime
import os

from fpdf import FPDF

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests/fixtures/docs/probes.pdf")

PAGES = [
    (
        "Deep Space Probes",
        [
            "Voyager 1 was launched in September 1977 and crossed the heliopause in 2012.",
            "Its twin, Voyager 2, is the only spacecraft to have visited Uranus and Neptune.",
        ],
    ),
    (
        "Fuel and power",
        [
            "The probes run on radioisotope thermoelectric generators fed by plutonium-238.",
            "Their output falls by about four watts a year, so instruments are switched off in turn.",
        ],
    ),
]


def main():
    pdf = FPDF()
    pdf.set_title(PAGES[0][0])
    # A fixed date and file id: the same bytes every run.
    pdf.set_creation_date(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    pdf.file_id = lambda: ""
    for heading, sentences in PAGES:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for sentence in sentences:
            pdf.multi_cell(0, 6, sentence, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    pdf.output(OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
