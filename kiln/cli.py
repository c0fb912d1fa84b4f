"""The ``kiln`` command line.

    kiln dump SPEC [--after PASS|all] [--llvm] [--llvm-opt] [--asm] [--cuda] [--passes P,...]
    kiln export SPEC -o OUTDIR [--name NAME] [--target-cpu host|generic|x86-64-v3|...]
                [--weights embedded|file] [--static]
    kiln demo [-o kiln-demo] [--epochs 20]   train, evaluate, save and export a digits CNN
    kiln serve MODEL [--port 8501] [--max-batch B --batch-timeout-ms T] ...  (kiln.serving)

SPEC is ``path/to/file.py:NAME`` (NAME a model or graph, or a function returning
one), a ``.kir`` file holding the IR text form (as ``kiln dump`` and dump
directories write it), or a Keras model file (``.keras``, ``.h5``, ``.json``).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path


class CLIError(Exception):
    pass


MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5", ".json")   # SPEC may be such a model file


def _labelled(stages):
    """(label, graph) per stage; a pass that runs more than once is labelled ``name``
    the first time, then ``name.2``, ``name.3``, ... (``--after constfold`` is the first run)."""
    seen: dict = {}
    out = []
    for name, g in stages:
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}.{seen[name]}", g))
    return out

def load_spec(spec: str):
    """Resolve SPEC to a model or a kiln.ir.Graph."""
    from . import ir

    path, _, name = spec.partition(":")
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{path}: no such file (expected path/to/file.py:NAME, a .kir file or a "
                       f"model file)")
    if p.suffix == ".kir" and not name:
        try:
            return ir.parse(p.read_text())
        except ir.ParseError as e:
            raise CLIError(f"{path}: {e}") from None
    if p.suffix in MODEL_FILE_SUFFIXES and not name:   # Keras model files (kiln/saving)
        from .saving import SavingError, load_model
        try:
            return load_model(p, compile=False)
        except (SavingError, OSError) as e:
            raise CLIError(str(e)) from None
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
    cuda = getattr(args, "cuda", False)
    if args.passes is not None:
        names = [p for p in args.passes.split(",") if p]
    elif cuda:     # the CUDA pipeline: no CPU-only ``layout`` pass
        from .runtime.cuda_executable import CUDA_PIPELINES
        names = list(CUDA_PIPELINES["inference"])
    else:
        names = pipeline("inference")
    pm = PassManager(names, verify=True)
    final = pm.run(graph)
    stages = _labelled(pm.stages)
    out = []
    if args.print_after_all:
        args.after = "all"
    if args.time_passes:
        sys.stderr.write(pm.report() + "\n")
    if args.after == "all":
        for s, g in stages:
            out.append(f"# after {s}\n{g}")
    elif args.after:
        found = dict(stages).get(args.after)
        if found is None:
            raise CLIError(f"no stage {args.after!r}; the stages are: {', '.join(s for s, _ in stages)}, all")
        out.append(str(found))
    if args.llvm or args.llvm_opt or args.asm:
        compiled = jit(lower_graph(final).module)
        if args.llvm:
            out.append(compiled.ll_before)
        if args.llvm_opt:
            out.append(compiled.ll_after)
        if args.asm:
            out.append(compiled.asm)
    if cuda:       # the generated numba.cuda kernels and their launch configuration
        from .codegen.cuda import lower_graph as lower_cuda
        out.append(lower_cuda(final).source())
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


def cmd_demo(args) -> int:
    from .demo import run

    if args.epochs < 1:
        raise CLIError(f"--epochs must be at least 1, got {args.epochs}")
    run(args.output, epochs=args.epochs)
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
    d.add_argument("--print-after-all", action="store_true", help="print the IR after every stage "
                                                                  "(same as --after all)")
    d.add_argument("--time-passes", action="store_true", help="print each pass's time to stderr")
    d.add_argument("--llvm", action="store_true", help="print the LLVM IR before optimization")
    d.add_argument("--llvm-opt", action="store_true", help="print the LLVM IR after optimization")
    d.add_argument("--asm", action="store_true", help="print the generated assembly")
    d.add_argument("--cuda", action="store_true", help="print the generated CUDA kernels "
                                                        "(numba.cuda source) and launch configuration")
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
    m = sub.add_parser("demo", help="the first thing to run: train a CNN on the bundled "
                                    "digits, evaluate, export it and dump its IR")
    m.add_argument("-o", "--output", default="kiln-demo", metavar="DIR",
                   help="where the artifacts go (default: ./kiln-demo)")
    m.add_argument("--epochs", type=int, default=20, help="training epochs (default: 20)")
    m.set_defaults(fn=cmd_demo)
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
