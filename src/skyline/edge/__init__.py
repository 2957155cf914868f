"""The edge as a fleet: agents (`EdgeAgent`) that answer with a collaboration strategy (`EDGE_STRATEGIES`:
local, cascade, split, cloud), keep every record through outages (`UplinkStore`, `UplinkSender`), run the
fleet's signed version of their model and join federated learning; the edge cloud (`EdgeCloud`: the
inference server plus the edge's routers), the fleet it keeps (`FleetStore`) and its staged rollouts
(`RolloutSpec`, `RolloutController`); split inference (`SplitModel`, `choose_partition`); the emulated link
(`LinkProxy`) and the evaluations.

Names are imported on first use: the agent pulls in ONNX Runtime and httpx, the cloud FastAPI.
"""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "agent": ("AgentConfig", "EdgeAgent", "FederatedNode"),
        "agent_app": ("create_agent_app",),
        "cascade": ("CascadeRouter",),
        "cloud": ("CloudConfig", "EdgeCloud"),
        "cloud_client": ("CloudClient",),
        "detector": ("HardExampleDetector",),
        "fleet": ("FleetStore",),
        "fleet_client": ("FleetClient",),
        "fleet_training": ("FleetTrainingConfig", "train_on_fleet"),
        "link": ("LinkConditions", "LinkProxy"),
        "local_model": ("LocalModel",),
        "partition": ("LayerProfile", "NetworkProfile", "PartitionController", "choose_partition"),
        "publish": ("publish_model",),
        "rollout": ("RolloutController", "RolloutSpec"),
        "split": ("SplitModel",),
        "strategies": ("EDGE_STRATEGIES", "EdgeStrategy"),
        "uplink_sender": ("UplinkSender",),
        "uplink_store": ("UplinkPolicy", "UplinkStore"),
    },
)
