#!/usr/bin/env python3
"""Lists, per file of core/src, the core modules it names through `crate::`
(in `use` lines and in paths), outside `#[cfg(test)]` modules, and reports any
import cycle among those modules.

Run from the repository root: `python3 core/scripts/crate_imports.py`.
Exit status 1 when there is a cycle.
"""
import os
import re
import sys

SRC = "core/src"


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(parts)


def non_test_text(text):
    cut = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*mod ", text, re.M)
    text = text[: cut.start()] if cut else text
    # drop line comments (doc comments name modules in links, not imports)
    return "\n".join(re.sub(r"//.*", "", line) for line in text.split("\n"))


def targets(text, modules):
    found = set()
    # `crate::a::b` paths, and `crate::{a, b::c}` groups (one level)
    for m in re.finditer(r"crate::\{([^}]*)\}", text, re.S):
        for item in m.group(1).split(","):
            name = item.strip().split("::")[0].strip("{ \n")
            if name:
                found.add(name)
    for m in re.finditer(r"crate::([a-z_]+)(::([a-z_]+))?", text):
        first, second = m.group(1), m.group(3)
        if second and f"{first}::{second}" in modules:
            found.add(f"{first}::{second}")
        else:
            found.add(first)
    return {f for f in found if f in modules or any(x.startswith(f + "::") for x in modules)}


def top(module):
    return module.split("::")[0]


def main():
    files = []
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs") and n != "main.rs" and n != "lib.rs":
                files.append(os.path.join(root, n))
    modules = {module_of(f) for f in files}
    graph = {}
    for f in sorted(files):
        me = module_of(f)
        deps = targets(non_test_text(open(f).read()), modules)
        deps = sorted(d for d in deps if top(d) != top(me))
        graph[me] = deps
        print(f"{f}: {', '.join(deps) if deps else '-'}")
    # cycles among top-level modules
    edges = {}
    for me, deps in graph.items():
        edges.setdefault(top(me), set()).update(top(d) for d in deps)
    cycles = []
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(edges.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    for c in cycles:
        print("cycle: " + " -> ".join(c))
    if not cycles:
        print("no cycle among core's modules")
    return 1 if cycles else 0


sys.exit(main())
