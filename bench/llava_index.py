"""Indexing a LLaVA-665K-sized file: time and peak memory (target: under a minute, under 1 GB).

    python bench/llava_index.py [--records 665000] [--format json|jsonl|both] [--json out.json]

Writes a synthetic file shaped like llava_v1_5_mix665k.json (about 1.5 kB a record: multi-turn
conversations with an image, one record in six text-only, non-ASCII text and escapes in places),
then indexes it in a fresh process (workloads.data.llava.index) and reports the seconds, the peak
resident memory of that process, the index's size, and the time to read 1,000 random records back.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["What is the man doing in the image?", "Describe the scene in detail.", "Quelle est la couleur du "
             "bus ? Répondez en un mot.", "How many people are visible, and what are they wearing?",
             "Is there a \"stop\" sign?\nAnswer yes or no."]
ANSWER = ("The image shows a busy street with several people walking along the sidewalk, a red bus waiting "
          "at the traffic light and tall buildings in the background. ")


def record(i: int) -> dict:
    turns = []
    for t in range(2 + i % 4):
        q = QUESTIONS[(i + t) % len(QUESTIONS)]
        turns += [{"from": "human", "value": ("<image>\n" if t == 0 and i % 6 else "") + q},
                  {"from": "gpt", "value": ANSWER * (1 + (i + t) % 3)}]
    out = {"id": f"{i:012d}", "conversations": turns}
    if i % 6:
        out["image"] = f"coco/train2017/{i:012d}.jpg"
    return out


def write(path: Path, n: int, fmt: str) -> None:
    with open(path, "w") as f:
        if fmt == "jsonl":
            for i in range(n):
                f.write(json.dumps(record(i), ensure_ascii=False) + "\n")
            return
        f.write("[")
        for i in range(n):
            f.write(("," if i else "") + "\n  " + json.dumps(record(i), ensure_ascii=False))
        f.write("\n]\n")


PROBE = """
import json, resource, sys, time, random
sys.path.insert(0, {root!r})
from workloads.data.llava import LlavaDataset
t0 = time.perf_counter()
ds = LlavaDataset({path!r})
seconds = time.perf_counter() - t0
rng = random.Random(0)
t1 = time.perf_counter()
for i in rng.sample(range(len(ds)), 1000):
    ds.record(i)
read = time.perf_counter() - t1
print(json.dumps({{"records": len(ds), "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "index_mb": (ds.index.offsets.nbytes + ds.index.lengths.nbytes + ds.index.has_image.nbytes) / 2**20,
                  "read_1000_s": read, "text_only": int((~ds.index.has_image).sum())}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=665_000)
    ap.add_argument("--format", choices=["json", "jsonl", "both"], default="both")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    out = []
    with tempfile.TemporaryDirectory() as d:
        for fmt in (["json", "jsonl"] if a.format == "both" else [a.format]):
            path = Path(d) / f"mix.{fmt}"
            t0 = time.perf_counter()
            write(path, a.records, fmt)
            written = time.perf_counter() - t0
            env = {**os.environ, "VLMSCALE_CACHE": str(Path(d) / f"cache-{fmt}")}  # a cold index
            r = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), path=str(path))], env=env,
                               capture_output=True, text=True, check=True)
            row = {"format": fmt, "file_mb": path.stat().st_size / 2**20, "write_s": written, **json.loads(r.stdout)}
            out.append(row)
            path.unlink()
    print(f"{'format':<7} {'records':>9} {'file MB':>9} {'index s':>8} {'peak RSS MB':>12} {'index MB':>9} "
          f"{'1000 reads s':>13}")
    for r in out:
        print(f"{r['format']:<7} {r['records']:>9,} {r['file_mb']:>9.0f} {r['seconds']:>8.1f} {r['peak_rss_mb']:>12.0f} "
              f"{r['index_mb']:>9.1f} {r['read_1000_s']:>13.3f}")
    print("target: under 60 s and under 1,024 MB:", "met" if all(r["seconds"] < 60 and r["peak_rss_mb"] < 1024
                                                                 for r in out) else "missed")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
