"""The console's static files: its own script and style sheet, and the front-end parts from npm.

htmx and uPlot are never copied into the repository: ``make setup`` runs ``npm ci`` beside this file
(package.json and package-lock.json pin them) and the console serves them from ``node_modules`` where
npm put them. Every URL carries a hash of the file's content, so browsers may cache it for good.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from skyline.errors import NotFoundError

HERE = Path(__file__).parent
NODE_MODULES = HERE / "node_modules"
OWN = HERE / "static"
# URL name → file under node_modules.
VENDOR = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}
AXE_SCRIPT = NODE_MODULES / "axe-core" / "axe.min.js"  # for the accessibility tests and benchmark
SETUP_HINT = "run 'make setup' (npm ci in src/skyline/cluster/console)"


@dataclass(frozen=True, slots=True)
class Asset:
    path: Path
    url: str  # with ?v=<content hash>
    media_type: str


def _media_type(name: str) -> str:
    return "text/css; charset=utf-8" if name.endswith(".css") else "text/javascript; charset=utf-8"


def _asset(prefix: str, name: str, path: Path) -> Asset | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Asset(path=path, url=f"/ui/{prefix}/{name}?v={digest}", media_type=_media_type(name))


class Assets:
    """The files the pages link to, found (and hashed) once when the console is mounted."""

    def __init__(self) -> None:
        self.own = {p.name: a for p in sorted(OWN.iterdir()) if (a := _asset("static", p.name, p))}
        found = {name: _asset("vendor", name, NODE_MODULES / rel) for name, rel in VENDOR.items()}
        self.vendor = {name: a for name, a in found.items() if a is not None}
        self.missing = sorted(set(VENDOR) - set(self.vendor))

    def url(self, name: str) -> str:
        """The cache-busting URL of an own or vendor file ('' for a vendor file not installed)."""
        asset = self.own.get(name) or self.vendor.get(name)
        return asset.url if asset else ""

    def get(self, prefix: str, name: str) -> Asset:
        asset = (self.own if prefix == "static" else self.vendor).get(name)
        if asset is None:
            hint = f"; {SETUP_HINT}" if name in VENDOR else ""
            raise NotFoundError(f"no console file {prefix}/{name}{hint}")
        return asset
