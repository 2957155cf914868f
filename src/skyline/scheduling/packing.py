"""`Packer`: the free capacity of every node, with fast best-fit / spread / fragmentation-aware placement.

Plain Python lists and dicts, no core types: the simulator keeps one `Packer` alive for a whole replay and
policies mutate it, so a decision for 1,000 jobs on 1,000 nodes costs milliseconds. Nodes are bucketed
by (GPU model, fully free devices) so that best-fit for whole-GPU gangs looks at ≤ 9 buckets, not at
every node. GPU amounts are in milli-GPU (1000 = one device); fractions live on a single device.

A node's *pool* is its (GPU model, tier): a request names the models and tiers it may use (empty: any),
and every strategy looks only at the pools it allows, so a tiered or typed job never lands elsewhere.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from skyline.errors import CapacityError, ConfigError

GPU = 1000

# One replica's place: (node index, device indices). A whole-GPU replica holds its devices entirely,
# a fractional one holds ``gpu_milli`` of its single device.
Replica = tuple[int, tuple[int, ...]]
Placing = tuple[Replica, ...]
Pool = tuple[str, str]  # (GPU model or "", tier)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """A node as the packer sees it: whole GPUs of one model, CPU and memory."""

    id: str
    gpus: int
    gpu_type: str | None = None
    cpu_milli: int = 0
    memory_mib: int = 0
    tier: str = "datacenter"


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What one job asks per replica, and how many replicas (a gang: all or none)."""

    gpu_milli: int
    replicas: int = 1
    cpu_milli: int = 0
    memory_mib: int = 0
    gpu_types: frozenset[str] = frozenset()  # allowed models; empty: any
    tiers: frozenset[str] = frozenset()  # allowed tiers; empty: any

    def __post_init__(self) -> None:
        if self.gpu_milli > GPU and self.gpu_milli % GPU:
            raise ConfigError(
                f"a replica asks a fraction of one GPU or whole GPUs, got {self.gpu_milli} milli"
            )
        if self.replicas < 1 or self.gpu_milli < 0:
            raise ConfigError(f"bad request: {self.replicas} replicas of {self.gpu_milli} milli-GPU")

    @property
    def whole(self) -> int:
        """Whole devices per replica (0 for fractional or CPU-only replicas)."""
        return self.gpu_milli // GPU if self.gpu_milli >= GPU else 0

    @property
    def total_gpu_milli(self) -> int:
        return self.gpu_milli * self.replicas


class Packer:
    """Free capacity per node and device; `take`/`release` keep the buckets in step."""

    def __init__(self, nodes: Sequence[NodeSpec]) -> None:
        if not nodes:
            raise ConfigError("a cluster needs at least one node")
        self.nodes = tuple(nodes)
        self.index = {n.id: i for i, n in enumerate(self.nodes)}
        self.dev_free = [[GPU] * n.gpus for n in self.nodes]
        # Fully free devices of each node, ascending; len() is the node's bucket.
        self.free_devs = [list(range(n.gpus)) for n in self.nodes]
        self.full = [n.gpus for n in self.nodes]
        self.cpu_free = [n.cpu_milli for n in self.nodes]
        self.mem_free = [n.memory_mib for n in self.nodes]
        self._pool_of = [(n.gpu_type or "", n.tier) for n in self.nodes]
        # In the order the nodes list them: a strategy prefers no GPU model of its own accord.
        self.pools = tuple(dict.fromkeys(self._pool_of))
        self.max_gpus = max(n.gpus for n in self.nodes)
        # buckets[pool][fully free devices] = ordered set of node indices (dict keys keep order)
        self.buckets: dict[Pool, list[dict[int, None]]] = {
            p: [{} for _ in range(self.max_gpus + 1)] for p in self.pools
        }
        for i, n in enumerate(self.nodes):
            self.buckets[self._pool_of[i]][n.gpus][i] = None
        self.partial: dict[int, None] = {}  # nodes with a partly used device (fractional jobs)
        self.total_gpus = sum(n.gpus for n in self.nodes)
        self.free_gpu_milli = self.total_gpus * GPU
        self.checks_cpu = any(n.cpu_milli or n.memory_mib for n in self.nodes)
        # The task mix fragmentation is measured against: (milli-GPU per replica, probability).
        self.workload: list[tuple[int, float]] = [(GPU, 1.0)]
        self._ever_fits: dict[Request, bool] = {}

    # ------------------------------------------------------------------ bookkeeping
    def _move(self, node: int, new_full: int) -> None:
        old = self.full[node]
        if old != new_full:
            row = self.buckets[self._pool_of[node]]
            del row[old][node]
            row[new_full][node] = None
            self.full[node] = new_full

    def _refresh_partial(self, node: int) -> None:
        if any(0 < d < GPU for d in self.dev_free[node]):
            self.partial[node] = None
        else:
            self.partial.pop(node, None)

    def take(self, req: Request, placing: Placing) -> None:
        """Commit ``placing`` (raises `CapacityError` if it does not fit: a policy bug, not user input)."""
        amount = req.gpu_milli if req.gpu_milli < GPU else GPU
        for node, devices in placing:
            free = self.dev_free[node]
            fully = self.free_devs[node]
            for d in devices:
                f = free[d]
                if f < amount:
                    raise CapacityError(f"device {d} of node {self.nodes[node].id} has {f} milli free")
                if f == GPU:
                    fully.remove(d)
                free[d] = f - amount
            self.free_gpu_milli -= amount * len(devices)
            if self.checks_cpu:
                self.cpu_free[node] -= req.cpu_milli
                self.mem_free[node] -= req.memory_mib
            self._move(node, len(fully))
            if 0 < amount < GPU:
                self._refresh_partial(node)

    def can_take(self, req: Request, placing: Placing) -> bool:
        """Whether `take` would succeed right now (every device and node still has room)."""
        amount = req.gpu_milli if req.gpu_milli < GPU else GPU
        per_node: dict[int, int] = {}
        for node, devices in placing:
            per_node[node] = per_node.get(node, 0) + 1
            free = self.dev_free[node]
            if any(free[d] < amount for d in devices) or len(set(devices)) != len(devices):
                return False
        if len({(n, d) for n, devices in placing for d in devices}) != sum(len(d) for _, d in placing):
            return False  # two replicas on one device
        return all(self._cpu_ok(node, req, count) for node, count in per_node.items())

    def release(self, req: Request, placing: Placing) -> None:
        """Give back what `take` committed."""
        amount = req.gpu_milli if req.gpu_milli < GPU else GPU
        for node, devices in placing:
            free = self.dev_free[node]
            fully = self.free_devs[node]
            for d in devices:
                free[d] += amount
                if free[d] == GPU:
                    bisect.insort(fully, d)
            self.free_gpu_milli += amount * len(devices)
            if self.checks_cpu:
                self.cpu_free[node] += req.cpu_milli
                self.mem_free[node] += req.memory_mib
            self._move(node, len(fully))
            if 0 < amount < GPU:
                self._refresh_partial(node)

    def claim(self, req: Request, node: int, devices: tuple[int, ...] = ()) -> Replica:
        """One replica on ``node``, on the given devices or on the first that fit."""
        if devices:
            return (node, devices)
        return (node, self._devices_on(node, req) or ())

    # ------------------------------------------------------------------ queries
    def _pools(self, req: Request) -> list[Pool]:
        """The pools ``req`` may use: its GPU models (for GPU asks) and its tiers."""
        return [p for p in self.pools if _allows(req, p)]

    def pool_of(self, node: int) -> Pool:
        """(GPU model or "", tier) of a node."""
        return self._pool_of[node]

    def _cpu_ok(self, node: int, req: Request, replicas: int = 1) -> bool:
        return not self.checks_cpu or (
            self.cpu_free[node] >= req.cpu_milli * replicas
            and self.mem_free[node] >= req.memory_mib * replicas
        )

    def _devices_on(self, node: int, req: Request) -> tuple[int, ...] | None:
        """Devices for one replica on ``node`` (tightest device for a fraction), or None."""
        free = self.dev_free[node]
        if req.gpu_milli == 0:
            return ()
        if req.gpu_milli < GPU:
            best = -1
            for d, f in enumerate(free):
                if f >= req.gpu_milli and (best < 0 or f < free[best]):
                    best = d
            return None if best < 0 else (best,)
        want = req.whole
        chosen = tuple(self.free_devs[node][:want])
        return chosen if len(chosen) == want else None

    def could_ever_fit(self, req: Request) -> bool:
        """Whether an empty cluster could hold the gang (else it would wait forever)."""
        known = self._ever_fits.get(req)
        if known is None:
            known = self._ever_fits[req] = self._could_ever_fit(req)
        return known

    def _could_ever_fit(self, req: Request) -> bool:
        nodes = [n for i, n in enumerate(self.nodes) if _allows(req, self._pool_of[i])]
        if req.gpu_milli == 0:  # CPU-only gangs span nodes (`_cpu_only`): together they must hold it
            if not self.checks_cpu:
                return bool(nodes)
            room = 0
            for n in nodes:
                room += _replicas_within(n.cpu_milli, n.memory_mib, req)
                if room >= req.replicas:
                    return True
            return False
        if req.gpu_milli <= GPU:
            return sum(n.gpus for n in nodes) >= req.replicas
        return sum(n.gpus // req.whole for n in nodes) >= req.replicas

    # ------------------------------------------------------------------ placement strategies
    def best_fit(self, req: Request) -> Placing | None:
        """Consolidate: the fullest node that holds the whole gang, else the fewest nodes (most free first)."""
        if req.gpu_milli == 0:
            return self._cpu_only(req, tightest=True)
        if req.gpu_milli < GPU and req.replicas == 1:
            return self._fraction(req, tightest=True)
        need = req.whole * req.replicas if req.whole else req.replicas
        unit = max(req.whole, 1)
        if need * GPU > self.free_gpu_milli:
            return None
        for pool in self._pools(req):
            row = self.buckets[pool]
            for free in range(need, self.max_gpus + 1):
                for node in row[free]:
                    if not self.checks_cpu or self._cpu_ok(node, req, req.replicas):
                        return self._fill(req, node)
        return self._span(req, unit, descending=True)

    def spread(self, req: Request) -> Placing | None:
        """Worst-fit: every replica on the emptiest node left (balances load, splits gangs)."""
        if req.gpu_milli == 0:
            return self._cpu_only(req, tightest=False)
        if req.gpu_milli < GPU and req.replicas == 1:
            return self._fraction(req, tightest=False)
        unit = max(req.whole, 1)
        if unit * req.replicas * GPU > self.free_gpu_milli:
            return None
        distinct = self._one_per_node(req, unit)
        if distinct is not None:
            return self._assign_devices(req, [(n, ()) for n in distinct])
        return self._round_robin(req, unit)

    def _one_per_node(self, req: Request, unit: int) -> list[int] | None:
        """One replica on each of the emptiest nodes, if there are enough: O(replicas + buckets)."""
        distinct: list[int] = []
        pools = self._pools(req)
        for free in range(self.max_gpus, unit - 1, -1):
            for pool in pools:
                for node in self.buckets[pool][free]:
                    if self._cpu_ok(node, req):
                        distinct.append(node)
                        if len(distinct) == req.replicas:
                            return distinct
        return None

    def _round_robin(self, req: Request, unit: int) -> Placing | None:
        """Replicas dealt over the nodes, emptiest first, one per node per round, until all are placed."""
        order = self._nodes_by_free(req, descending=True)
        placing: list[Replica] = []
        taken: dict[int, int] = {}
        while len(placing) < req.replicas:
            progressed = False
            for node in order:
                used = taken.get(node, 0)
                if len(placing) < req.replicas and self._room_for_one_more(node, req, unit, used):
                    taken[node] = used + 1
                    placing.append((node, ()))
                    progressed = True
            if not progressed:
                return None
        return self._assign_devices(req, placing)

    def _room_for_one_more(self, node: int, req: Request, unit: int, used: int) -> bool:
        return self.full[node] - used * unit >= unit and self._cpu_ok(node, req, used + 1)

    def _nodes_by_free(self, req: Request, *, descending: bool) -> list[int]:
        nodes: list[int] = []
        frees = range(self.max_gpus, 0, -1) if descending else range(1, self.max_gpus + 1)
        pools = self._pools(req)
        for free in frees:
            for pool in pools:
                nodes.extend(self.buckets[pool][free])
        return nodes

    def _span(self, req: Request, unit: int, *, descending: bool) -> Placing | None:
        placing: list[Replica] = []
        for node in self._nodes_by_free(req, descending=descending):
            fit = self.full[node] // unit
            while fit and len(placing) < req.replicas and self._cpu_ok(node, req, 1 + _count(placing, node)):
                placing.append((node, ()))
                fit -= 1
            if len(placing) == req.replicas:
                return self._assign_devices(req, placing)
        return None

    def _fill(self, req: Request, node: int) -> Placing:
        """Every replica on ``node``, on its lowest fully free devices."""
        unit = req.whole or 1
        devices = self.free_devs[node]
        if req.replicas == 1:
            return ((node, tuple(devices[:unit])),)
        return tuple((node, tuple(devices[k * unit : (k + 1) * unit])) for k in range(req.replicas))

    def _assign_devices(self, req: Request, placing: list[Replica]) -> Placing:
        unit = max(req.whole, 1)
        cursor: dict[int, int] = {}
        out: list[Replica] = []
        for node, _ in placing:
            start = cursor.get(node, 0)
            out.append((node, tuple(self.free_devs[node][start : start + unit])))
            cursor[node] = start + unit
        return tuple(out)

    def fragmentation_aware(self, req: Request) -> Placing | None:
        """Single-replica asks go where the expected fragmentation grows least (FGD's greedy rule).

        Nodes in the same state score the same, so each distinct state is scored once per call.
        """
        if req.replicas > 1 or req.gpu_milli == 0:
            return self.best_fit(req)
        pools = set(self._pools(req))
        scored: dict[tuple[Pool, tuple[int, ...]], tuple[float, tuple[int, ...]] | None] = {}
        best: tuple[float, int, tuple[int, ...]] | None = None
        for node in self._distinct_candidates(pools):
            if not self._cpu_ok(node, req):
                continue
            signature = (self._pool_of[node], tuple(self.dev_free[node]))
            if signature not in scored:
                scored[signature] = self._best_devices(node, req)
            found = scored[signature]
            if found is not None and (best is None or found[0] < best[0]):
                best = (found[0], node, found[1])
        return None if best is None else ((best[1], best[2]),)

    def _distinct_candidates(self, pools: set[Pool]) -> list[int]:
        """Nodes worth scoring: every partly used node, and of the others (devices all free or all
        taken, so equal when their free count is) the first of each bucket, unless CPU is checked."""
        if self.checks_cpu:
            return [n for n in range(len(self.nodes)) if self._pool_of[n] in pools]
        out = [n for n in self.partial if self._pool_of[n] in pools]
        for pool in (p for p in self.pools if p in pools):
            for bucket in self.buckets[pool][1:]:
                first = next((n for n in bucket if n not in self.partial), None)
                if first is not None:
                    out.append(first)
        return out

    def _best_devices(self, node: int, req: Request) -> tuple[float, tuple[int, ...]] | None:
        free = self.dev_free[node]
        before = _node_fragmentation(free, self.workload)
        options: list[tuple[int, ...]] = []
        if req.gpu_milli < GPU:
            seen: set[int] = set()
            for d, f in enumerate(free):
                if f >= req.gpu_milli and f not in seen:
                    seen.add(f)
                    options.append((d,))
        else:
            devices = self._devices_on(node, req)
            if devices:
                options.append(devices)
        best: tuple[float, tuple[int, ...]] | None = None
        amount = min(req.gpu_milli, GPU)
        for devices in options:
            after = list(free)
            for d in devices:
                after[d] -= amount
            delta = _node_fragmentation(after, self.workload) - before
            if best is None or delta < best[0]:
                best = (delta, devices)
        return best

    def _fraction(self, req: Request, *, tightest: bool) -> Placing | None:
        best: tuple[int, int, int] | None = None  # (free on device, node, device)
        candidates = list(self.partial) + self._nodes_by_free(req, descending=not tightest)[:64]
        for node in candidates:
            if not _allows(req, self._pool_of[node]) or not self._cpu_ok(node, req):
                continue
            for d, f in enumerate(self.dev_free[node]):
                if f >= req.gpu_milli and (best is None or (f < best[0] if tightest else f > best[0])):
                    best = (f, node, d)
        return None if best is None else ((best[1], (best[2],)),)

    def _cpu_only(self, req: Request, *, tightest: bool) -> Placing | None:
        """One node that holds the whole gang (the tightest or the roomiest), else the fewest nodes."""
        best: tuple[int, int] | None = None
        for node in range(len(self.nodes)):
            if _allows(req, self._pool_of[node]) and self._cpu_ok(node, req, req.replicas):
                key = self.cpu_free[node]
                if best is None or (key < best[0] if tightest else key > best[0]):
                    best = (key, node)
        if best is not None:
            return tuple((best[1], ()) for _ in range(req.replicas))
        return self._cpu_span(req, tightest=tightest)

    def _cpu_span(self, req: Request, *, tightest: bool) -> Placing | None:
        """No node holds the gang: the nodes with the most room (fewest nodes), the last one chosen
        tightest (or roomiest) among those that hold the remainder. Runs only when one node is not enough.
        """
        room = [
            (fit, node)
            for node in range(len(self.nodes))
            if _allows(req, self._pool_of[node])
            and (fit := _replicas_within(self.cpu_free[node], self.mem_free[node], req)) > 0
        ]
        if sum(fit for fit, _ in room) < req.replicas:
            return None
        room.sort(key=lambda item: (-item[0], item[1]))
        placing: list[Replica] = []
        left = req.replicas
        for k, (fit, node) in enumerate(room):
            if fit >= left:  # the last node: any later node that also holds the rest will do
                holders = [item for item in room[k:] if item[0] >= left]
                last = min(holders) if tightest else holders[0]
                placing.extend((last[1], ()) for _ in range(left))
                return tuple(placing)
            placing.extend((node, ()) for _ in range(fit))
            left -= fit
        return None  # unreachable: the room sums to at least the gang


def _node_fragmentation(dev_free: Sequence[int], workload: Sequence[tuple[int, float]]) -> float:
    """Expected milli-GPUs of a node that the next task, drawn from ``workload``, could not use."""
    total = 0.0
    full = sum(1 for f in dev_free if f == GPU)
    for milli, p in workload:
        if milli < GPU:
            unusable = sum(f for f in dev_free if f < milli)
        elif full >= milli // GPU:
            unusable = sum(f for f in dev_free if f < GPU)
        else:
            unusable = sum(dev_free)
        total += p * unusable
    return total


def _allows(req: Request, pool: Pool) -> bool:
    gpu_type, tier = pool
    if req.tiers and tier not in req.tiers:
        return False
    return not (req.gpu_types and req.gpu_milli and gpu_type not in req.gpu_types)


def _count(placing: list[Replica], node: int) -> int:
    return sum(1 for n, _ in placing if n == node)


def _replicas_within(cpu_milli: int, memory_mib: int, req: Request) -> int:
    """How many of ``req``'s replicas fit in that much CPU and memory (capped at the gang's size)."""
    fit = req.replicas
    if req.cpu_milli > 0:
        fit = min(fit, max(cpu_milli, 0) // req.cpu_milli)
    if req.memory_mib > 0:
        fit = min(fit, max(memory_mib, 0) // req.memory_mib)
    return fit
