"""`vlmscale validate` and a cell's start on a LLaVA-665K-sized file: time and peak memory
(target: validate under a minute on 2 cores, under 1 GB), and `validate --deep` decoding images.

    python bench/llava_index.py [--records 665000] [--format json|jsonl|both] [--deep-images 10000]
                                [--json out.json]

Writes a synthetic file shaped like llava_v1_5_mix665k.json (about 1.5 kB a record: multi-turn
conversations with an image, one record in six text-only, non-ASCII text and escapes in places,
every image path present on disk — 1,000 distinct images, so every record's path is looked up),
then in a fresh process with a cold cache: validate's check of the file (workloads.data.checks:
every record's structure, every image path's existence), a cell opening it (the cached index),
and 1,000 random records read back. With --deep-images N: N real JPEGs (320×240) decoded by
``validate --deep``'s parallel check, with its progress line.
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


DISTINCT_IMAGES = 1000


def record(i: int) -> dict:
    turns = []
    for t in range(2 + i % 4):
        q = QUESTIONS[(i + t) % len(QUESTIONS)]
        turns += [{"from": "human", "value": ("<image>\n" if t == 0 and i % 6 else "") + q},
                  {"from": "gpt", "value": ANSWER * (1 + (i + t) % 3)}]
    out = {"id": f"{i:012d}", "conversations": turns}
    if i % 6:
        out["image"] = f"coco/train2017/{i % DISTINCT_IMAGES:012d}.jpg"
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


def images(root: Path, n: int, real: bool) -> None:
    """Image files as records name them: empty placeholders, or real JPEGs (what --deep decodes)."""
    folder = root / "coco" / "train2017"
    folder.mkdir(parents=True, exist_ok=True)
    if not real:
        for i in range(n):
            (folder / f"{i:012d}.jpg").touch()
        return
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:240, 0:320]
    for i in range(n):
        pixels = np.stack([(x + i) % 256, (y * 2 + i) % 256, (x + y + 3 * i) % 256], -1).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:012d}.jpg", quality=85)


PROBE = """
import json, resource, sys, time, random
sys.path.insert(0, {root!r})
from workloads.data.checks import llava_problems
from workloads.data.llava import LlavaDataset
t0 = time.perf_counter()
problems = llava_problems({path!r}, {images!r})
validate = time.perf_counter() - t0
assert problems == [], problems[:3]
t0 = time.perf_counter()
ds = LlavaDataset({path!r}, {images!r})
seconds = time.perf_counter() - t0
rng = random.Random(0)
t1 = time.perf_counter()
for i in rng.sample(range(len(ds)), 1000):
    ds.record(i)
read = time.perf_counter() - t1
print(json.dumps({{"records": len(ds), "validate_s": validate, "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "index_mb": (ds.index.offsets.nbytes + ds.index.lengths.nbytes + ds.index.has_image.nbytes) / 2**20,
                  "read_1000_s": read, "text_only": int((~ds.index.has_image).sum())}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=665_000)
    ap.add_argument("--format", choices=["json", "jsonl", "both"], default="both")
    ap.add_argument("--deep-images", type=int, default=10_000, help="images validate --deep decodes (0: none)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    out = []
    with tempfile.TemporaryDirectory() as d:
        images(Path(d), DISTINCT_IMAGES, real=False)
        for fmt in (["json", "jsonl"] if a.format == "both" else [a.format]):
            path = Path(d) / f"mix.{fmt}"
            t0 = time.perf_counter()
            write(path, a.records, fmt)
            written = time.perf_counter() - t0
            env = {**os.environ, "VLMSCALE_CACHE": str(Path(d) / f"cache-{fmt}")}  # a cold index
            r = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), path=str(path), images=d)], env=env,
                               capture_output=True, text=True, check=True)
            row = {"format": fmt, "file_mb": path.stat().st_size / 2**20, "write_s": written, **json.loads(r.stdout)}
            out.append(row)
            path.unlink()
    print(f"{'format':<7} {'records':>9} {'file MB':>9} {'validate s':>11} {'open s':>7} {'peak RSS MB':>12} "
          f"{'index MB':>9} {'1000 reads s':>13}")
    for r in out:
        print(f"{r['format']:<7} {r['records']:>9,} {r['file_mb']:>9.0f} {r['validate_s']:>11.1f} {r['seconds']:>7.2f} "
              f"{r['peak_rss_mb']:>12.0f} {r['index_mb']:>9.1f} {r['read_1000_s']:>13.3f}")
    print(f"target: validate under 60 s on {os.cpu_count()} cores and under 1,024 MB:",
          "met" if all(r["validate_s"] < 60 and r["peak_rss_mb"] < 1024 for r in out) else "missed")
    deep = _deep(a.deep_images) if a.deep_images else None
    if deep:
        print(f"validate --deep: {deep['images']:,} JPEGs (320×240) decoded in {deep['seconds']:.1f} s "
              f"({deep['images'] / deep['seconds']:.0f} images/s on {os.cpu_count()} cores)")
    if a.json:
        Path(a.json).write_text(json.dumps({"files": out, "deep": deep}, indent=2))
    return 0


def _deep(n: int) -> dict:
    """``validate --deep`` on n records, each its own real image (the progress line on stderr)."""
    sys.path.insert(0, str(ROOT))
    from workloads.data.checks import llava_problems

    with tempfile.TemporaryDirectory() as d:
        images(Path(d), n, real=True)
        path = Path(d) / "deep.jsonl"
        with open(path, "w") as f:
            for i in range(n):
                f.write(json.dumps({"id": str(i), "image": f"coco/train2017/{i:012d}.jpg", "conversations": [
                    {"from": "human", "value": "<image>\nDescribe it."}, {"from": "gpt", "value": "stripes"}]}) + "\n")
        os.environ["VLMSCALE_CACHE"] = str(Path(d) / "cache")
        t0 = time.perf_counter()
        problems = llava_problems(path, d, deep=True)
        seconds = time.perf_counter() - t0
        assert problems == [], problems[:3]
    return {"images": n, "seconds": seconds}


if __name__ == "__main__":
    sys.exit(main())
