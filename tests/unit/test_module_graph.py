"""The modules of `skyline` import each other without cycles (imports for type checking only excepted):
a cycle means two modules are one concept split in two, or a primitive owned twice."""

from __future__ import annotations

import grimp
import networkx as nx
import pytest

pytestmark = pytest.mark.unit


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("skyline", exclude_type_checking_imports=True, cache_dir=None)
    edges = nx.DiGraph(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
    )
    cycles = [
        sorted(component) for component in nx.strongly_connected_components(edges) if len(component) > 1
    ]
    assert cycles == []
