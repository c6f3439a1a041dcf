"""Build hook: compile protos/ (the Envoy 1.40 ext_proc wire schema) into extproc/_proto/.

All metadata lives in pyproject.toml. The only thing added here is a build_py step that runs
grpcio-tools' protoc before the normal build, writing into the source tree, so that
`pip install .` (regular wheel) and `pip install -e .` (PEP 660 editable, which imports straight
from the source tree) both see the generated modules. extproc/_proto/ is git-ignored apart from
its __init__.py.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO_DIR = ROOT / "protos"
OUT_PACKAGE = ROOT / "extproc" / "_proto"


def compile_protos() -> list[str]:
    """Run protoc on every .proto under protos/; return the dotted names of the generated packages."""
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if not sources:
        if any(OUT_PACKAGE.rglob("*_pb2.py")):  # e.g. building from a tree that ships generated code
            return _generated_packages()
        raise SystemExit(f"no .proto files under {PROTO_DIR}")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = ["grpc_tools.protoc", f"--proto_path={PROTO_DIR}", f"--proto_path={well_known}",
            f"--python_out={ROOT}", f"--pyi_out={ROOT}", f"--grpc_python_out={ROOT}", *sources]
    # SystemExit, not an ordinary exception: editable_wheel downgrades exceptions raised by a
    # custom build_py to a warning, which would hide a broken schema.
    if protoc.main(args) != 0:
        raise SystemExit("grpc_tools.protoc failed on " + " ".join(sources))
    for pb2 in OUT_PACKAGE.rglob("*_pb2.py"):
        directory = pb2.parent
        while directory != OUT_PACKAGE:
            (directory / "__init__.py").touch()
            directory = directory.parent
    return _generated_packages()


def _generated_packages() -> list[str]:
    return sorted(".".join(init.parent.relative_to(ROOT).parts) for init in OUT_PACKAGE.rglob("__init__.py"))


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generated = compile_protos()
        # Package discovery ran before the code existed; add the generated packages explicitly.
        self.packages = sorted(set(self.packages or ()) | set(generated))
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
