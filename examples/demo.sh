#!/usr/bin/env bash
# The demo `make run` runs: a bank from sample photos in embedded Chroma under ./demo/data,
# then a check of edited copies and unrelated photos. Exit status 0 whatever the verdicts.
set -euo pipefail
export MODERATE_HOME="${MODERATE_HOME:-$PWD/demo/data}"
rm -rf "$MODERATE_HOME"
python examples/make_samples.py demo

moderate bank create DEMO_FLAGGED --action block --description "demo: sample photos flagged as if harmful"
moderate bank add DEMO_FLAGGED demo/flagged --recursive --source-url https://example.org/case-17 --note "demo case 17"
moderate bank list
echo
echo "== moderate check demo/incoming --recursive"
moderate check demo/incoming --recursive --policy policies/default.yaml || echo "(exit code $?: 0 allow, 3 review, 4 block)"
echo
echo "== moderate check demo/incoming/astronaut-q30.jpg --json"
moderate check demo/incoming/astronaut-q30.jpg --json || true
