"""moto's S3 server with its conditional writes made visibly non-atomic: ``put_object`` checks
If-None-Match / If-Match, then (here) waits ``delay`` seconds before writing. moto itself checks
then writes without a lock, so the same race exists with a window of microseconds; widening it
makes a test of the lock's read-back fail for certain when the read-back is missing.

    python tests/support/moto_racy.py DELAY -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import sys
import time

from moto.s3.models import S3Backend
from moto.server import main

if __name__ == "__main__":
    delay = float(sys.argv[1])
    write = S3Backend.put_object

    def put_object(self, *args, **kwargs):  # called after the responder's condition checks
        time.sleep(delay)
        return write(self, *args, **kwargs)

    S3Backend.put_object = put_object
    main(sys.argv[2:])
