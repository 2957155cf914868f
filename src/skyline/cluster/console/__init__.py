"""The web console at ``/ui``: Overview, Jobs, Nodes, Scheduling, Models and Audit views of a control plane.

Mounted on the control plane's own app by `skyline.cluster.server.build` (same process, port and TLS).
Pages are rendered on the server; live updates arrive by server-sent events from one change poller;
every view and action goes through the permission table of `skyline.security.rbac`. docs/console.md.
"""

from skyline.cluster.console.app import mount_console
from skyline.cluster.console.core import Console, ConsoleConfig

__all__ = ["Console", "ConsoleConfig", "mount_console"]
