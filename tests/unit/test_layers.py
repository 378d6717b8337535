"""The import graph of service/ and indexers/: every module in a layer, no upward import, no cycle.

A module may import modules of its own layer or of a lower one. The layers, lowest first:

    foundation   settings, errors, metrics, state/ (the SQLite file, the PostgreSQL pool): no Fathom logic
    modelkit     ONNX Runtime sessions, the int8 rewrite, the model hub: shared by embedder and rerank
    search       the search domain: queries, filters, fusion, the pipeline and its protocols
    adapters     backends (stores, embedder, remote reranker) and auth (keys, scopes, billing)
    engines      ingest (chunking, journal, writer) and rerank (cross-encoders, batching engine)
    use cases    the search service: search, context, documents and collections at request time
    stores       the state stores chosen from settings; the indexer's library (sources, runs, metrics)
    runtime      service/runtime.py, the composition root
    api          the HTTP routes, their dependencies and guard; the MCP tools, side by side with them
    app          create_app
    cli          the `fathom` commands
    testing      the live-server harness of the tests and benches: nothing of Fathom's may import it

Imports inside functions count too: a lazy import is still a dependency.

The HTTP routes and the MCP tools are two adapters over the search service: the MCP server imports
nothing of the HTTP layer. The journal and the vector store are ingest's: other code asks the search
service or the writer, rather than reaching through `writer.journal` or `stack.vectors`.

Packages count as well as modules: two modules of one package may each import the other's package
without a module-level cycle, and the packages would still depend on each other. So the graph of
packages (service.auth, service.state, ...; a top-level module stands for itself) has no cycle either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

ROOTS = ("service", "indexers")
# Attribute chains only ingest may follow (the composition root hands these parts to what it builds).
INGEST_ONLY = {("writer", "journal"), ("stack", "vectors")}
MAY_REACH_INGEST_PARTS = ("service.ingest", "service.runtime")
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "service",
            "service.packaged",
            "service.settings",
            "service.errors",
            "service.metrics",
            "service.disconnect",
            "service.state",
        ),
    ),
    ("modelkit", ("service.modelkit",)),
    ("search", ("service.search",)),
    ("adapters", ("service.backends", "service.auth")),
    ("engines", ("service.ingest", "service.rerank")),
    ("use cases", ("service.search_service",)),
    ("stores", ("service.stores", "service.analytics", "indexers")),
    ("runtime", ("service.runtime",)),
    ("api", ("service.api", "service.mcp_server")),
    ("app", ("service.app",)),
    (
        "cli",
        (
            "service.cli_options",
            "service.cli",
            "service.analytics.command",
            "indexers.cli",
            "indexers.eval_cli",
        ),
    ),
    ("testing", ("service.testing",)),
]


def module_names() -> dict[str, Path]:
    names = {}
    for root in ROOTS:
        for path in (REPO / root).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                member = f"{node.module}.{alias.name}"
                found.add(member if member in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known}


def layer_of(module: str) -> int:
    """The layer of the longest prefix naming the module; KeyError for a module in no layer."""
    best, rank = -1, -1
    for number, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), number
    if rank < 0:
        raise KeyError(f"{module} is in no layer: add it to LAYERS in {__name__}")
    return rank


def graph() -> dict[str, set[str]]:
    known = module_names()
    return {name: imported(path, known) - {name} for name, path in known.items()}


def package_of(module: str) -> str:
    """The package a module belongs to: its first two names (service.auth.keys: service.auth)."""
    return ".".join(module.split(".")[:2])


def package_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with each package's modules merged into one node."""
    packages: dict[str, set[str]] = {package_of(module): set() for module in edges}
    for module, targets in edges.items():
        packages[package_of(module)].update(package_of(target) for target in targets)
    return {package: targets - {package} for package, targets in packages.items()}


def cycles(edges: dict[str, set[str]]) -> Iterator[list[str]]:
    """Each import cycle once, as the modules along it (depth-first search, three colours)."""
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> Iterator[list[str]]:
        state[node] = 1
        trail.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                yield [*trail[trail.index(target) :], target]
            elif target not in state:
                yield from visit(target)
        trail.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            yield from visit(node)


def test_every_module_has_a_layer() -> None:
    for module in module_names():
        layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    assert [" -> ".join(cycle) for cycle in cycles(graph())] == []


def test_the_package_graph_has_no_cycle() -> None:
    assert [" -> ".join(cycle) for cycle in cycles(package_graph(graph()))] == []


def test_state_and_the_model_toolkit_sit_below_what_uses_them() -> None:
    """state/ holds only the low-level files and pools, all on one floor; the factories choosing a
    store sit above the stores they build; the model toolkit sits below both of its users."""
    state = {layer_of(module) for module in module_names() if package_of(module) == "service.state"}
    assert state == {layer_of("service.settings")}
    assert layer_of("service.stores") > max(layer_of("service.auth"), layer_of("service.ingest"))
    assert layer_of("service.modelkit") < min(layer_of("service.backends"), layer_of("service.rerank"))
    users = {
        package_of(module)
        for module, targets in graph().items()
        if any(package_of(target) == "service.modelkit" for target in targets)
    }
    assert {"service.backends", "service.rerank"} <= users


def test_the_checks_see_what_they_guard() -> None:
    """The checks would catch a cycle and an upward import, and the graph holds the known edges."""
    assert list(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})) == [["a", "b", "c", "a"]]
    # auth.keys -> state.db and state.stores -> auth.access: no module cycle, but a package cycle
    modules = {"p.auth.keys": {"p.state.db"}, "p.state.db": set(), "p.state.stores": {"p.auth.access"}}
    modules["p.auth.access"] = set()
    assert list(cycles(modules)) == []
    assert list(cycles(package_graph(modules))) == [["p.auth", "p.state", "p.auth"]]
    edges = graph()
    assert "service.runtime" in edges["service.app"]
    assert "service.app" in edges["service.cli"]  # imported inside serve(): it counts as well
    assert layer_of("service.app") > layer_of("service.api.search") > layer_of("service.runtime")


def reached_through(path: Path) -> set[str]:
    """The `owner.part` chains of INGEST_ONLY that the module's code follows (`runtime.search.writer.journal`
    counts as `writer.journal`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        name = (
            owner.attr
            if isinstance(owner, ast.Attribute)
            else owner.id
            if isinstance(owner, ast.Name)
            else ""
        )
        if (name, node.attr) in INGEST_ONLY:
            found.add(f"{name}.{node.attr}")
    return found


def test_the_mcp_server_imports_nothing_of_the_http_layer() -> None:
    edges = graph()
    assert "service.search_service" in edges["service.mcp_server"]
    assert sorted(t for t in edges["service.mcp_server"] if t.startswith("service.api")) == []


def test_only_ingest_reaches_through_the_journal_and_the_vector_store() -> None:
    reached = {
        module: sorted(chains)
        for module, path in module_names().items()
        if not module.startswith(MAY_REACH_INGEST_PARTS) and (chains := reached_through(path))
    }
    assert reached == {}


def test_the_reach_check_sees_what_it_guards() -> None:
    names = module_names()
    assert reached_through(names["service.ingest.drift"]) == {"writer.journal", "stack.vectors"}
