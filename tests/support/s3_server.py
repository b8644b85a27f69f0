"""A real S3-compatible server for tests: moto's standalone server on 127.0.0.1, in its own process
group. Clients find it the way they find any S3 endpoint: AWS_ENDPOINT_URL and AWS_* credentials
in the environment (s3fs, pyarrow — Ray Tune — and botocore all read them)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.mlflow_server import free_port, stop_group


class S3Server:
    def __init__(self, log_dir: Path, bucket: str = "vlmscale-test", write_delay: float = 0.0):
        """``write_delay`` > 0: a store whose conditional writes are not atomic (tests/support/moto_racy.py)."""
        self.port, self.bucket, self.log_dir = free_port(), bucket, log_dir
        self.write_delay = write_delay
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def __enter__(self) -> "S3Server":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_dir / "moto.log", "a")
        server = ([str(Path(__file__).with_name("moto_racy.py")), str(self.write_delay)] if self.write_delay
                  else ["-m", "moto.server"])
        self.proc = subprocess.Popen([sys.executable, *server, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {(self.log_dir / 'moto.log').read_text()[-2000:]}")
            try:
                req = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")
                urllib.request.urlopen(req, timeout=2)  # create the bucket (anonymous is fine for moto)
                return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError("moto server did not come up in 60 s")

    def __exit__(self, *exc) -> None:
        stop_group(self.proc)
        self.log.close()
