#!/usr/bin/env python3
"""Keep the daemon's layering true: no include cycle, no call cycle between
files, no source file over the size limit.

The include graph is read from the #include "..." lines of proxy/ and
policy/.  The call graph is read from the compiled objects (nm: what each
object defines and what it needs), so macros, comments and strings cannot
fool it; an edge a.c -> b.c means a.c calls (or takes the address of)
something b.c defines.  Calls up through hook tables are not edges, which
is the point of the hook tables.

    layering.py --root SRC [--max-lines N] OBJECT_OR_ARCHIVE...
    layering.py --self-test

Exits 1 and names the cycle (or the file) when one is found.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

SOURCE_DIRS = ("proxy", "proxy/ops", "proxy/ctl", "policy")
INCLUDE_DIRS = ("proxy", "policy")   # the -I of CMakeLists.txt
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def source_files(root):
    for d in SOURCE_DIRS:
        full = os.path.join(root, d)
        if not os.path.isdir(full):
            continue
        for name in sorted(os.listdir(full)):
            if name.endswith((".c", ".h")):
                yield os.path.join(d, name)


def include_graph(root):
    graph = {}
    for rel in source_files(root):
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            text = f.read()
        edges = set()
        for inc in INCLUDE.findall(text):
            for base in (os.path.dirname(rel),) + INCLUDE_DIRS:
                cand = os.path.normpath(os.path.join(base, inc))
                if os.path.isfile(os.path.join(root, cand)):
                    edges.add(cand)
                    break
        graph[rel] = edges
    return graph


def nm_symbols(paths):
    """{object: (defined, needed)} from nm -A over objects and archives."""
    out = subprocess.run(["nm", "-A", "-g"] + list(paths), check=True,
                         capture_output=True, text=True).stdout
    objs = {}
    for line in out.splitlines():
        # "archive.a:member.o:addr T name", "file.o:addr T name",
        # "file.o:                 U name"
        parts = line.split()
        if len(parts) != 3:
            continue
        where, kind, name = parts
        where = where.rsplit(":", 1)[0]          # the address, or nothing
        obj = os.path.basename(where.split(":")[-1])
        defined, needed = objs.setdefault(obj, (set(), set()))
        (needed if kind == "U" else defined).add(name)
    return objs


def call_graph(paths):
    objs = nm_symbols(paths)
    owner = {}
    for obj, (defined, _) in objs.items():
        for name in defined:
            owner[name] = obj
    graph = {}
    for obj, (_, needed) in objs.items():
        graph[obj] = {owner[n] for n in needed if n in owner} - {obj}
    return graph


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan),
    iterative so a deep graph cannot overflow the stack."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def long_files(root, limit):
    for rel in source_files(root):
        if not rel.endswith(".c"):
            continue
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > limit:
            yield rel, n


def check(root, objects, limit):
    problems = []
    for comp in cycles(include_graph(root)):
        problems.append("include cycle: " + " <-> ".join(comp))
    if objects:
        for comp in cycles(call_graph(objects)):
            problems.append("call cycle: " + " <-> ".join(comp))
    for rel, n in long_files(root, limit):
        problems.append(f"{rel}: {n} lines, over {limit}: split it along a seam")
    return problems


def self_test():
    """The checks must be able to fail: a made-up tree with each fault."""
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "proxy"))
        files = {"a.h": '#include "b.h"\n', "b.h": '#include "a.h"\n',
                 "a.c": 'int a(void);\nint b(void);\n'
                        'int a(void) { return b(); }\n',
                 "b.c": 'int a(void);\nint b(void);\n'
                        'int b(void) { return a(); }\n' + "\n" * 50}
        for name, text in files.items():
            with open(os.path.join(tmp, "proxy", name), "w") as f:
                f.write(text)
        objs = []
        for name in ("a", "b"):
            obj = os.path.join(tmp, name + ".c.o")
            subprocess.run(["cc", "-c", "-o", obj,
                            os.path.join(tmp, "proxy", name + ".c")],
                           check=True)
            objs.append(obj)
        problems = check(tmp, objs, 40)
        want = ["include cycle: proxy/a.h <-> proxy/b.h",
                "call cycle: a.c.o <-> b.c.o",
                "proxy/b.c: 53 lines, over 40: split it along a seam"]
        if problems != want:
            print("self-test: expected", want, "got", problems)
            return 1
        with open(os.path.join(tmp, "proxy", "b.h"), "w") as f:
            f.write("\n")
        if check(tmp, objs[:1], 100):
            print("self-test: a clean tree was reported")
            return 1
    print("self-test: every fault found, a clean tree passes")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    p.add_argument("--max-lines", type=int, default=800)
    p.add_argument("--self-test", action="store_true")
    p.add_argument("objects", nargs="*")
    args = p.parse_args()
    if args.self_test:
        return self_test()
    problems = check(os.path.abspath(args.root), args.objects, args.max_lines)
    for line in problems:
        print(line)
    if not problems:
        print(f"layering: no include or call cycle, no file over "
              f"{args.max_lines} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
