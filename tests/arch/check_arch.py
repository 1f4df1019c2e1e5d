"""docs/ARCHITECTURE.md's module tables hold the code to its arrows.

Every `#include "x.h"` of src/M.c and of its own header src/M.h is an arrow M -> x. For
each row of the tables (`| modules | role | may use | may not touch |`):
  - every arrow of the row's modules is in its "may use" column, and every module named
    there is used by one of them (the column is what the code does, not a wish);
and over src/ as a whole:
  - every module of src/ (a .c or a lone .h) has a row;
  - the arrows have no cycle.
Arrows between the modules of one row (ctl.h and ctl_util.c, render and jout, the small
helpers) are not listed. A module named in "may use" is its first word: `store_write (types)` is store_write,
`keys.h` is keys. Generated headers (lua_scripts.h) are not modules.
"""
import os
import re
import sys

GENERATED = {"lua_scripts"}


def top():
    d = os.environ.get("PARTNERD_SRCDIR")
    if d:
        return d
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def includes(path):
    with open(path, encoding="utf-8") as f:
        return set(re.findall(r'^\s*#\s*include\s+"([A-Za-z0-9_]+)\.h"', f.read(), re.M))


def arrows(src):
    """{module: set of modules it includes} (its .c and its own .h)."""
    mods = {}
    for name in os.listdir(src):
        m, ext = os.path.splitext(name)
        if ext in (".c", ".h"):
            mods.setdefault(m, set()).update(includes(os.path.join(src, name)))
    for m in mods:
        mods[m].discard(m)
        mods[m] -= GENERATED
    return mods


def rows(doc):
    """[(line number, [modules], {may use})] of the tables' rows."""
    out = []
    with open(doc, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.startswith("| `"):
                continue
            cols = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cols) < 4:
                continue
            names = []
            for tok in re.findall(r"`([^`]+)`", cols[0]):
                if tok.startswith("src/lua/"):
                    continue
                names.append(re.sub(r"\.(\[ch\]|c|h)$", "", tok))
            if not names:
                continue
            use = set()
            for part in cols[2].split(","):
                w = part.strip().split(" ")[0].strip("`")
                if w:
                    use.add(re.sub(r"\.h$", "", w))
            out.append((n, names, use - GENERATED))
    return out


def cycle(graph):
    """A cycle of graph as a list of modules, or None."""
    state = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state:
                c = visit(d, path + [d])
                if c:
                    return c
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            c = visit(m, [m])
            if c:
                return c
    return None


def main():
    t = top()
    graph = arrows(os.path.join(t, "src"))
    table = rows(os.path.join(t, "docs", "ARCHITECTURE.md"))
    results = []
    seen = set()
    for n, names, use in table:
        real = set()
        for m in names:
            if m not in graph:
                results.append((False, "ARCHITECTURE.md:%d: %s is no module of src/" % (n, m)))
                continue
            seen.add(m)
            real |= graph[m]
        real -= set(names)      # a row's modules are one: ctl.h and ctl_util.c
        what = ", ".join(names)
        missing = sorted(real - use)
        unused = sorted(use - real)
        if missing:
            results.append((False, "ARCHITECTURE.md:%d: %s include(s) %s, not in its 'may use'"
                            % (n, what, ", ".join(missing))))
        if unused:
            results.append((False, "ARCHITECTURE.md:%d: %s 'may use' %s, which none of them "
                            "include(s)" % (n, what, ", ".join(unused))))
        if not missing and not unused:
            results.append((True, "%s: the arrows are the includes" % what))
    for m in sorted(set(graph) - seen):
        results.append((False, "src/%s has no row in docs/ARCHITECTURE.md's tables" % m))
    c = cycle(graph)
    results.append((c is None, "no cycle between the modules" if c is None
                    else "a cycle: " + " -> ".join(c)))
    failed = 0
    for ok, msg in results:
        print(("ok: " if ok else "FAIL: ") + msg)
        failed += not ok
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
