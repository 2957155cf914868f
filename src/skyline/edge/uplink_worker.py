"""A standalone store-and-forward process: produce numbered records into the uplink store and send them.

``python -m skyline.edge.uplink_worker --store S --cloud URL --token T --records N`` puts records
``rec-0 … rec-(N-1)`` (a record already queued or delivered keeps its id, so a restarted worker produces
the same ids again and the cloud drops the repeats) while a sender thread drains the store. Tests and the
benchmark SIGKILL this process at random moments and restart it: nothing may be lost or stored twice.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from skyline.edge.uplink_sender import SenderConfig, UplinkSender
from skyline.edge.uplink_store import UplinkStore

_PROGRESS_FILE = "produced.txt"


def _resume_from(store_path: Path) -> int:
    """How many records earlier incarnations produced (written after each put, so it may lag by one)."""
    marker = store_path.with_name(store_path.name + "." + _PROGRESS_FILE)
    try:
        return int(marker.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def run_worker(store_path: Path, cloud_url: str, token: str, records: int, produce_interval_s: float) -> None:
    marker = store_path.with_name(store_path.name + "." + _PROGRESS_FILE)
    with UplinkStore(store_path) as store:
        sender = UplinkSender(
            store,
            SenderConfig(cloud_url=cloud_url, token=token, batch_records=8, timeout_s=2.0, backoff_max_s=0.5),
        )
        stop = threading.Event()
        thread = threading.Thread(target=sender.loop, args=(stop,), kwargs={"idle_s": 0.02}, daemon=True)
        thread.start()
        for index in range(_resume_from(store_path), records):
            store.put("sample", {"index": index}, record_id=f"rec-{index}")
            marker.write_text(str(index + 1))
            time.sleep(produce_interval_s)
        while len(store):
            time.sleep(0.02)
        stop.set()
        thread.join()
        sender.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--cloud", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--interval-s", type=float, default=0.002)
    args = parser.parse_args(argv)
    run_worker(args.store, args.cloud, args.token, args.records, args.interval_s)


if __name__ == "__main__":
    main()
