"""Parses Prometheus text from stdin with the Python prometheus-client package's own parser
and prints the families as JSON: name -> {"type", "samples": [[name, labels, value]]}.
A counter's family is named without `_total`, its samples with it."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = {
    f.name: {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
}
print(json.dumps(families))
