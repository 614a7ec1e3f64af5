"""Output: schema-1 JSON codecs (:mod:`.codec`, no Rich: storage imports them) and the
text/Rich rendering of reports, scans and history (:mod:`.text`)."""
