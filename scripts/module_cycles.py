#!/usr/bin/env python3
"""Reports import cycles between the top-level modules of every Rust crate
target in the repository (libraries, binaries, tests, benches, fuzz targets).

A top-level module is one declared in a target's root file (`lib.rs`,
`main.rs`, `src/bin/x.rs`, `tests/x.rs`, ...). Module A depends on module B
when code anywhere under A names a path into B: `crate::B::...`,
`use crate::{B, ...}`, or a `super::`/`self::` path that climbs out of A into
B. Comments and string literals are ignored (a doc link is no dependency);
`#[cfg(test)]` code counts like any other. A path to an item the root
re-exports (`pub use b::Thing;` then `crate::Thing`) counts as a dependency
on the module it comes from.

Prints each target's module graph as `a -> b, c` (with `-v`) and every
cycle (a strongly connected set of two or more modules, with one file:line
for each edge inside it). Exits 1 if there is a cycle, 0 otherwise.

    scripts/module_cycles.py            # the whole repository
    scripts/module_cycles.py -v node sim    # some folders, with the graphs
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {"target", ".git", ".venv", "node_modules", "corpus", "artifacts"}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text):
    """Blanks comments, string and char literals, keeping line numbers."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            m = re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of_file(path, src_root, root_file):
    """The module path of `path` inside the target rooted at `root_file`."""
    if path == root_file:
        return []
    rel = os.path.relpath(path, src_root)
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def child_files(parent_file, parent_module_dir, text):
    """Files of the `mod x;` declarations in `text` (honouring `#[path]`)."""
    found = []
    for m in re.finditer(
        r'(#\[path\s*=\s*"([^"]+)"\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(' + IDENT + r")\s*;",
        text,
    ):
        explicit, name = m.group(2), m.group(3)
        if explicit:
            candidate = os.path.normpath(os.path.join(os.path.dirname(parent_file), explicit))
            found.append((name, candidate))
            continue
        for candidate in (
            os.path.join(parent_module_dir, name + ".rs"),
            os.path.join(parent_module_dir, name, "mod.rs"),
        ):
            if os.path.exists(candidate):
                found.append((name, candidate))
                break
    return found


def collect_target(root_file):
    """Every file of the target: [(file, module path)]."""
    src_root = os.path.dirname(root_file)
    files = []

    def walk(path, module, module_dir):
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        files.append((path, module, raw))
        # `#[path = "..."]` needs its string: drop only the comment lines.
        declarations = re.sub(r"(?m)^\s*//.*$", "", raw)
        for name, child in child_files(path, module_dir, declarations):
            if not os.path.exists(child):
                continue
            child_dir = (
                os.path.dirname(child)
                if os.path.basename(child) == "mod.rs"
                else os.path.join(os.path.dirname(child), name)
            )
            walk(child, module + [name], child_dir)

    root_dir = src_root
    walk(root_file, [], root_dir)
    return files


def inline_module_at(code):
    """For each offset, the inline modules (`mod x { ... }`) enclosing it."""
    stack = []  # (name, depth at which it opened)
    depth = 0
    result = []
    marks = {m.end() - 1: m.group(1) for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", code)}
    for i, c in enumerate(code):
        if c == "{":
            depth += 1
            if i in marks:
                stack.append((marks[i], depth))
        elif c == "}":
            if stack and stack[-1][1] == depth:
                stack.pop()
            depth -= 1
        result.append(tuple(name for name, _ in stack))
    return result


PATH_START = re.compile(r"(?<![A-Za-z0-9_:$])((?:crate|self|super)(?:\s*::\s*(?:super|self))*)\s*::\s*")


def top_level_names_after(code, pos):
    """The first segments named at `pos` (an identifier, or a `{...}` group)."""
    m = re.match(r"\s*(" + IDENT + r")", code[pos:])
    if m:
        return [m.group(1)]
    if code[pos:].lstrip().startswith("{"):
        start = code.index("{", pos)
        depth, j, names, token_start = 0, start, [], True
        while j < len(code):
            c = code[j]
            if c == "{":
                depth += 1
                token_start = depth == 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            elif c == "," and depth == 1:
                token_start = True
            elif depth == 1 and token_start and not c.isspace():
                mm = re.match(IDENT, code[j:])
                if mm:
                    names.append(mm.group(0))
                    j += len(mm.group(0))
                    token_start = False
                    continue
                token_start = False
            j += 1
        return names
    return []


def dependencies(files, top_modules, reexports):
    """(from, to) -> [file:line] for every reference between top modules."""
    edges = defaultdict(list)
    for path, module, raw in files:
        if not module:
            continue
        code = strip_comments_and_strings(raw)
        inline = inline_module_at(code)
        for m in PATH_START.finditer(code):
            head = re.sub(r"\s+", "", m.group(1)).split("::")
            enclosing = list(module) + list(inline[m.start()] if m.start() < len(inline) else ())
            if head[0] == "crate":
                base = []
                rest = head[1:]
            else:
                base = list(enclosing)
                rest = head
            ok = True
            for seg in rest:
                if seg == "super":
                    if not base:
                        ok = False
                        break
                    base.pop()
                elif seg == "self":
                    pass
            if not ok:
                continue
            names = top_level_names_after(code, m.end())
            if base:
                targets = [base[0]]
            else:
                targets = []
                for name in names:
                    if name in top_modules:
                        targets.append(name)
                    elif name in reexports:
                        targets.append(reexports[name])
            line = code.count("\n", 0, m.start()) + 1
            for t in targets:
                if t != module[0] and t in top_modules:
                    edges[(module[0], t)].append(f"{os.path.relpath(path, ROOT)}:{line}")
    return edges


def root_reexports(root_code, top_modules):
    """Names the root re-exports from its modules: name -> module."""
    names = {}
    for m in re.finditer(r"pub\s+use\s+(" + IDENT + r")\s*::\s*", root_code):
        module = m.group(1)
        if module not in top_modules:
            continue
        rest = root_code[m.end():root_code.index(";", m.end())]
        for ident in re.findall(IDENT, rest.replace("self", "")):
            if ident not in ("as",):
                names[ident] = module
    return names


def strongly_connected(nodes, graph):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def target_roots(base):
    roots = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        if "Cargo.toml" not in filenames:
            continue
        for rel in ("src/lib.rs", "src/main.rs"):
            p = os.path.join(dirpath, rel)
            if os.path.exists(p):
                roots.append(p)
        for sub in ("src/bin", "tests", "benches", "examples", "fuzz_targets"):
            d = os.path.join(dirpath, sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    if name.endswith(".rs"):
                        roots.append(os.path.join(d, name))
    return sorted(set(roots))


def main(argv):
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    bases = [os.path.abspath(a) for a in args] or [ROOT]
    cycles = 0
    targets = 0
    for root_file in sorted({r for base in bases for r in target_roots(base)}):
        files = collect_target(root_file)
        top = {m[0] for _, m, _ in files if m}
        if not top:
            continue
        targets += 1
        root_code = strip_comments_and_strings(files[0][2])
        edges = dependencies(files, top, root_reexports(root_code, top))
        graph = defaultdict(set)
        for a, b in edges:
            graph[a].add(b)
        name = os.path.relpath(root_file, ROOT)
        if verbose:
            print(f"{name}:")
            for a in sorted(top):
                print(f"  {a} -> {', '.join(sorted(graph.get(a, ()))) or '(nothing)'}")
        for comp in strongly_connected(top, graph):
            if len(comp) < 2:
                continue
            cycles += 1
            print(f"CYCLE in {name}: {' <-> '.join(comp)}")
            for a in comp:
                for b in comp:
                    if b in graph.get(a, ()):
                        where = edges[(a, b)]
                        more = f" (+{len(where) - 1} more)" if len(where) > 1 else ""
                        print(f"    {a} -> {b}: {where[0]}{more}")
    print(f"module_cycles: {targets} crate targets checked, {cycles} cycle(s)")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
