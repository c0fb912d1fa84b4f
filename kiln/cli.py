"""The ``kiln`` command line.

    kiln dump SPEC [--after PASS|all] [--llvm] [--llvm-opt] [--asm] [--passes P,...]
    kiln export SPEC -o OUTDIR [--name NAME] [--target-cpu host|generic|x86-64-v3|...]
                [--weights embedded|file] [--static]
    kiln serve MODEL [--port 8501] [--max-batch B --batch-timeout-ms T] ...  (kiln.serving)

SPEC is ``path/to/file.py:NAME`` (NAME a model or graph, or a function returning
one) or a ``.kir`` file holding the IR text form (as ``kiln dump`` and dump
directories write it).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path


class CLIError(Exception):
    pass


def load_spec(spec: str):
    """Resolve SPEC to a model or a kiln.ir.Graph."""
    from . import ir

    path, _, name = spec.partition(":")
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{path}: no such file (expected path/to/file.py:NAME or a .kir file)")
    if p.suffix == ".kir" and not name:
        try:
            return ir.parse(p.read_text())
        except ir.ParseError as e:
            raise CLIError(f"{path}: {e}") from None
    if p.suffix != ".py" or not name:
        raise CLIError(f"expected path/to/file.py:NAME or a .kir file, got {spec!r}")
    mod_spec = importlib.util.spec_from_file_location(f"_kiln_user_{p.stem}", p)
    module = importlib.util.module_from_spec(mod_spec)
    sys.path.insert(0, str(p.resolve().parent))
    try:
        mod_spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    if not hasattr(module, name):
        public = [k for k in vars(module) if not k.startswith("_")]
        raise CLIError(f"{path} defines no {name!r} (it defines: {', '.join(public) or 'nothing'})")
    obj = getattr(module, name)
    if callable(obj) and not isinstance(obj, ir.Graph) and not hasattr(obj, "_lower"):
        obj = obj()
    if not isinstance(obj, ir.Graph) and not hasattr(obj, "_lower"):
        raise CLIError(f"{spec}: expected a kiln model or kiln.ir.Graph (or a function returning "
                       f"one), got {type(obj).__name__}")
    return obj


def cmd_dump(args) -> int:
    from .codegen.llvm import jit, lower_graph
    from .ir import Graph
    from .passes import PassManager, pipeline

    obj = load_spec(args.spec)
    graph = obj if isinstance(obj, Graph) else obj._lower()
    names = pipeline("inference") if args.passes is None else [p for p in args.passes.split(",") if p]
    pm = PassManager(names, verify=True)
    final = pm.run(graph)
    stage_names = [s for s, _ in pm.stages]
    out = []
    if args.after == "all":
        for s, g in pm.stages:
            out.append(f"# after {s}\n{g}")
    elif args.after:
        if args.after not in stage_names:
            raise CLIError(f"no stage {args.after!r}; the stages are: {', '.join(stage_names)}, all")
        out.append(str(dict(pm.stages)[args.after]))
    if args.llvm or args.llvm_opt or args.asm:
        compiled = jit(lower_graph(final).module)
        if args.llvm:
            out.append(compiled.ll_before)
        if args.llvm_opt:
            out.append(compiled.ll_after)
        if args.asm:
            out.append(compiled.asm)
    if not out:
        out.append(str(final))
    sys.stdout.write("\n".join(s if s.endswith("\n") else s + "\n" for s in out))
    return 0


def cmd_export(args) -> int:
    from .runtime.export import export

    obj = load_spec(args.spec)
    e = export(obj, args.output, name=args.name, target_cpu=args.target_cpu,
               weights=args.weights, static=args.static)
    print(f"kiln: exported {e.name} ({e.abi.target_cpu}, weights {e.abi.weights_bytes} bytes "
          f"{'embedded' if e.abi.embedded else 'in a file'}) in {e.timings['total']:.1f} s:")
    for f in e.files:
        print(f"  {f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kiln", description="kiln: a compiler for Keras-style models")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="print the IR (after any pass), the LLVM IR or the assembly")
    d.add_argument("spec", help="path/to/file.py:NAME (a model, graph, or function returning one) "
                                "or a .kir IR file")
    d.add_argument("--after", metavar="PASS", help="print the IR after this stage "
                                                  "(lower, a pass name, or 'all')")
    d.add_argument("--passes", help="comma-separated pass pipeline (default: the inference "
                                    "pipeline; '' for none)")
    d.add_argument("--llvm", action="store_true", help="print the LLVM IR before optimization")
    d.add_argument("--llvm-opt", action="store_true", help="print the LLVM IR after optimization")
    d.add_argument("--asm", action="store_true", help="print the generated assembly")
    d.set_defaults(fn=cmd_dump)
    from .runtime.export import TARGET_CPUS, WEIGHTS_MODES
    x = sub.add_parser("export", help="write the model as a shared library with a C API "
                                      "(libNAME.so, NAME.h, main.c)")
    x.add_argument("spec", help="path/to/file.py:NAME or a .kir IR file (as for dump)")
    x.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output directory")
    x.add_argument("--name", help="C symbol prefix and file name (default: the graph's name)")
    x.add_argument("--target-cpu", default="host", choices=TARGET_CPUS,
                   help="host: fastest here (the JIT's code); generic: any x86-64 (no AVX)")
    x.add_argument("--weights", default="embedded", choices=WEIGHTS_MODES,
                   help="embed the weights in the library, or write NAME.weights next to it")
    x.add_argument("--static", action="store_true", help="also write the static archive libNAME.a")
    x.set_defaults(fn=cmd_export)
    from .serving.command import add_parser as add_serve_parser
    add_serve_parser(sub)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except CLIError as e:
        print(f"kiln: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:   # ExportError: the C compiler or linker failed
        print(f"kiln: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as e:
        print(f"kiln: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
