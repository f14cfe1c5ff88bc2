#!/usr/bin/env python3
# Finds import cycles between modules inside each crate's library (src/lib.rs tree),
# from `use crate::..`, `super::..` and in-code paths; exits 1 if any cycle exists.
# A private submodule of a module other than the crate root (`mod part;` in
# stream/mod.rs) is part of its parent: one type's impl split across files.
import os, re, sys
from collections import deque

CHAR = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'\n])'")
CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
USE = re.compile(r"(?<![\w$])(pub\s*(?:\([^)]*\))?\s+)?use\s+(?=[\w:{])([^;]*);")
RAW = re.compile(r'b?r(#*)"')
ATTR = re.compile(r"\s*#\s*\[")
PATH = re.compile(r"(?<![\w:])(\w+)((?:\s*::\s*\w+)+)")

def blank(s, a, b):
    """Replace s[a:b] by spaces, keeping newlines (so offsets and lines survive)."""
    return s[:a] + re.sub(r"[^\n]", " ", s[a:b]) + s[b:]

def strip_comments_and_strings(s):
    out, i, n = [], 0, len(s)
    while i < n:
        c, prev = s[i], s[i - 1] if i else " "
        raw_ok = c in "br" and not (prev.isalnum() or prev == "_")
        m = RAW.match(s, i) if raw_ok else None
        if s.startswith("//", i):
            j = s.find("\n", i); j = n if j < 0 else j
        elif s.startswith("/*", i):
            j, depth = i + 2, 1
            while j < n and depth:
                if s.startswith("/*", j): depth, j = depth + 1, j + 2
                elif s.startswith("*/", j): depth, j = depth - 1, j + 2
                else: j += 1
        elif m:
            j = s.find('"' + m.group(1), m.end()); j = n if j < 0 else j + 1 + len(m.group(1))
        elif c == '"':
            j = i + 1
            while j < n and s[j] != '"': j += 2 if s[j] == "\\" else 1
            j += 1
        elif c == "'" and CHAR.match(s, i):
            j = CHAR.match(s, i).end()
        else:
            out.append(c); i += 1; continue
        out.append(re.sub(r"[^\n]", " ", s[i:j])); i = j
    return "".join(out)

def item_end(s, i):
    """End offset of the item starting at i (after its attributes): `;` or a {...} block."""
    depth, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in "([": depth += 1
        elif c in ")]": depth -= 1
        elif c == ";" and depth <= 0: return i + 1
        elif c == "{" and depth <= 0: return block_end(s, i)
        i += 1
    return n

def block_end(s, i, open_="{", close="}"):
    """End offset of the balanced block whose opening bracket is at i."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_: depth += 1
        elif s[j] == close:
            depth -= 1
            if depth == 0: return j + 1
    return len(s)

def strip_tests(s):
    """Blank every `#[cfg(test)]` item (usually `mod tests { .. }`) and its other attributes."""
    if re.search(r"#!\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]", s): return blank(s, 0, len(s))
    while (m := CFG_TEST.search(s)):
        i = m.end()
        while (a := ATTR.match(s, i)):  # further attributes of the same item
            i = block_end(s, a.end() - 1, "[", "]")
        s = blank(s, m.start(), item_end(s, i))
    return s

def load_crate(crate_dir):
    """Follow `mod x;` declarations from src/lib.rs. Returns {module tuple: (path, cleaned text)}."""
    mods, todo = {}, [((), os.path.join(crate_dir, "src", "lib.rs"))]
    load_crate.private = set()
    while todo:
        mod, path = todo.pop()
        with open(path, encoding="utf-8") as f:
            text = strip_tests(strip_comments_and_strings(f.read()))
        mods[mod] = (path, text)
        base = os.path.dirname(path)
        if mod and os.path.basename(path) != "mod.rs":
            base = os.path.join(base, mod[-1])
        for m in re.finditer(r"(?<![\w$])mod\s+(\w+)\s*;", text):
            cands = [os.path.join(base, m.group(1) + ".rs"), os.path.join(base, m.group(1), "mod.rs")]
            found = [c for c in cands if os.path.isfile(c)]
            if found:
                todo.append((mod + (m.group(1),), found[0]))
                if mod and not re.search(r"pub\s*(\([^)]*\))?\s*$", text[:m.start()]):
                    load_crate.private.add(mod + (m.group(1),))
            else: print(f"warning: {path}: no file for `mod {m.group(1)};`", file=sys.stderr)
    return mods

def use_paths(tree, offset):
    """Expand a use tree `crate::{a::X, b as c}` into ([segments], offset) leaves."""
    out, stack, cur, pos, skip = [], [[]], [], offset, False
    for t in re.finditer(r"\w+|[{},*]", tree):
        tok = t.group()
        if skip: skip = False
        elif tok == "as": skip = True
        elif tok == "{": stack.append(stack[-1] + cur); cur = []
        elif tok in ",}":
            if cur: out.append((stack[-1] + cur, pos))
            cur = []
            if tok == "}" and len(stack) > 1: stack.pop()
        else:
            if not cur: pos = offset + t.start()
            cur.append(tok)
    if cur: out.append((stack[-1] + cur, pos))
    return out

def resolve(segs, mod, inline_depth, mods):
    """The deepest existing module a path names, or None if it is not a crate-internal path."""
    segs = [x for k, x in enumerate(segs) if not (k and x == "self")]
    if segs[0] == "crate": base, rest = (), segs[1:]
    elif segs[0] == "self": base, rest = mod, segs[1:]
    elif segs[0] == "super":
        k = next((i for i, x in enumerate(segs) if x != "super"), len(segs))
        up = k - inline_depth  # supers inside an inline `mod x { }` first climb out of it
        if up > len(mod): return None
        base, rest = (mod[:len(mod) - up] if up > 0 else mod), segs[k:]
    elif mod + (segs[0],) in mods: base, rest = mod + (segs[0],), segs[1:]
    else: return None
    for x in rest:
        if base + (x,) not in mods: break
        base += (x,)
    return base

def edges_of(mod, mods):
    path, text = mods[mod]
    inline = [(m.start(), block_end(text, m.end() - 1))
              for m in re.finditer(r"(?<![\w$])mod\s+\w+\s*\{", text)]
    depth = lambda p: sum(a <= p < b for a, b in inline)
    refs = []  # (target, offset)
    for m in USE.finditer(text):
        if m.group(2).lstrip().startswith("::"): continue  # `use ::extern_crate`
        for segs, pos in use_paths(m.group(2), m.start(2)):
            t = resolve(segs, mod, depth(pos), mods)
            if t is not None and not (m.group(1) and t[:len(mod)] == mod):  # `pub use child::..` re-export
                refs.append((t, pos))
        text = blank(text, m.start(), m.end())
    for m in PATH.finditer(text):
        segs = [m.group(1)] + re.findall(r"\w+", m.group(2))
        t = resolve(segs, mod, depth(m.start()), mods)
        if t is not None: refs.append((t, m.start()))
    out = {}
    for t, pos in sorted(refs, key=lambda r: r[1]):
        if t != mod and t not in out:
            out[t] = f"{os.path.relpath(path)}:{mods[mod][1].count(chr(10), 0, pos) + 1}"
    return out

def tarjan(graph):
    index, low, stack, on, sccs = {}, {}, [], set(), []
    def visit(v):
        index[v] = low[v] = len(index); stack.append(v); on.add(v)
        for w in sorted(graph[v]):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = set()
            while True:
                w = stack.pop(); on.discard(w); scc.add(w)
                if w == v: break
            sccs.append(scc)
    for v in sorted(graph):
        if v not in index: visit(v)
    return [s for s in sccs if len(s) > 1]

def shortest(graph, scc, a, goal):
    """Shortest path inside scc from a to the nearest node satisfying goal (BFS)."""
    prev, q = {a: None}, deque([a])
    while q:
        v = q.popleft()
        for w in sorted(graph[v]):
            if w in scc and w not in prev:
                prev[w] = v
                if goal(w):
                    path = [w]
                    while prev[path[-1]] is not None: path.append(prev[path[-1]])
                    return path[::-1]
                q.append(w)

def closed_walk(graph, scc):
    """A cycle through every module of the SCC (a module may repeat when no simple one exists)."""
    start = min(scc); walk, left = [start], set(scc) - {start}
    while left:
        walk += shortest(graph, scc, walk[-1], lambda w: w in left)[1:]; left -= set(walk)
    return walk + shortest(graph, scc, walk[-1], lambda w: w == start)[1:]

def main(argv):
    quiet = "--quiet" in argv
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    crates = [a for a in argv if a != "--quiet"] or [
        os.path.join(root, c) for c in ("tunnel", "proto", "agent", "gateway", "policy")]
    name = lambda m: "::".join(m) or "crate"
    found = False
    for crate in crates:
        label = os.path.basename(os.path.normpath(crate))
        if not os.path.isfile(os.path.join(crate, "src", "lib.rs")):
            print(f"{label}: no src/lib.rs, skipped", file=sys.stderr); continue
        mods = load_crate(crate)
        def part_of(m):
            while m in load_crate.private:
                m = m[:-1]
            return m
        graph = {}
        for m in mods:
            g = graph.setdefault(part_of(m), {})
            for b, where in edges_of(m, mods).items():
                if part_of(b) != part_of(m):
                    g.setdefault(part_of(b), where)
        sccs = sorted(tarjan(graph), key=min)
        for scc in sccs if not quiet else []:
            walk = closed_walk(graph, scc)
            print(f"{label}: " + " -> ".join(map(name, walk)))
            for a, b in dict.fromkeys(zip(walk, walk[1:])):
                print(f"    {name(a)} -> {name(b)}  {graph[a][b]}")
        n_edges = sum(map(len, graph.values()))
        summary = "; ".join(f"{{{', '.join(sorted(map(name, s)))}}}" for s in sccs)
        print(f"{label}: {len(mods)} modules, {n_edges} edges, " +
              (f"{len(sccs)} cycle(s): {summary}" if sccs else "no cycles"))
        found |= bool(sccs)
    return 1 if found else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
