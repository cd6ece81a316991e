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

echo
echo "== why the collage matched: the mirrored coffee photo, outlined in demo/why.png"
moderate explain demo/incoming/coffee-collage.jpg coffee --out demo/why.png

echo
echo "== signed originals: a newsroom signs and registers a photo; a re-encoded copy is a modified copy"
moderate keys generate newsroom --signer "Demo Newsroom"
moderate keys trust "$MODERATE_HOME/keys/newsroom.pub" --name "Demo Newsroom (trusted)"
moderate bank create DEMO_ORIGINALS --kind originals --description "demo: signed originals"
python - <<'PY'
from PIL import Image
from skimage import data
Image.fromarray(data.chelsea()).save("demo/original.jpg", quality=92)
PY
moderate sign demo/original.jpg --key newsroom --register DEMO_ORIGINALS
moderate verify demo/original.jpg
python -c "from PIL import Image; Image.open('demo/original.jpg').resize((300, 200)).save('demo/copy.jpg', quality=70)"
moderate check demo/copy.jpg --enqueue || echo "(exit code $?)"

echo
echo "== the review queue and the audit log"
moderate queue list
moderate queue stats
moderate audit verify
