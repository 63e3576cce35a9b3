"""The operator graph: ``from`` edges, topological order, cycles. Pure functions on names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def topological_order(nodes: Sequence[str], upstream: Mapping[str, Sequence[str]]) -> list[str]:
    """Kahn's algorithm, stable: whenever several operators are ready, the one declared first runs next.

    ``upstream[n]`` lists the operators ``n`` reads from. Raises ValueError naming a cycle.
    """
    remaining = {n: {u for u in upstream.get(n, ()) if u in upstream or u in nodes} for n in nodes}
    order: list[str] = []
    while remaining:
        ready = next((n for n in nodes if n in remaining and not remaining[n]), None)
        if ready is None:
            cycle = find_cycle(list(remaining), {n: sorted(d) for n, d in remaining.items()})
            raise ValueError("cycle: " + " -> ".join(cycle or list(remaining)))
        order.append(ready)
        del remaining[ready]
        for deps in remaining.values():
            deps.discard(ready)
    return order


def find_cycle(nodes: Sequence[str], upstream: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle as a closed path ``[a, b, ..., a]`` following ``from`` edges, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in upstream.get(node, ()):
            if dep not in upstream:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for n in nodes:
        if n not in state and (found := visit(n)):
            return found
    return None


def downstream_of(node: str, upstream: Mapping[str, Sequence[str]]) -> set[str]:
    """Every operator that (transitively) reads from ``node``."""
    found: set[str] = set()
    frontier = {node}
    while frontier:
        frontier = {n for n, deps in upstream.items() if frontier & set(deps)} - found
        found |= frontier
    return found
