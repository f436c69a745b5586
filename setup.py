"""Build the Cython kernels: kernels/<name>.pyx -> lpmon._kernels.<name>.

Compiler directives are set here once. LPMON_CYTHON_DEBUG=1 turns bounds and
wraparound checks back on (and drops optimisation) for debugging a kernel.

C sources listed in ISA_SOURCES are compiled once per instruction set with
that set's -march and linked into their extension; lpmon_isa.h picks
the best copy the CPU supports at import, so the build runs on any x86-64.
"""

import os
import platform
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("LPMON_CYTHON_DEBUG", "") not in ("", "0")
X86_64 = platform.machine().lower() in ("x86_64", "amd64") and sys.platform.startswith("linux")

# -fno-trapping-math lets GCC if-convert (and so vectorise) selects between
# arithmetic results; it does not change results or NaN handling, unlike
# -ffast-math, which is deliberately absent.
COMPILE_ARGS = (["-O0", "-g"] if DEBUG else ["-O3"]) + ["-fno-trapping-math"]
LINK_ARGS = []
if sys.platform.startswith("linux"):
    # OpenMP for opt-in threads (prange) and for `omp simd` reductions.
    COMPILE_ARGS += ["-fopenmp"]
    LINK_ARGS += ["-fopenmp"]

ISA_FLAGS = {"base": []}
if X86_64:
    ISA_FLAGS.update({"avx2": ["-march=x86-64-v3"], "avx512": ["-march=x86-64-v4"]})

# extension name -> C source built once per ISA
ISA_SOURCES = {
    "logloss": "kernels/logloss_isa.c",
    "rowwise": "kernels/rowwise_isa.c",
    "affine": "kernels/affine_isa.c",
    "calibrate": "kernels/calibrate_isa.c",
    "interaction": "kernels/interaction_isa.c",
    "int8gemm": "kernels/int8gemm_isa.c",
}
# Kernels that must round exactly as FBGEMM does. GCC's default
# -ffp-contract=fast fuses a * b + c into one FMA wherever the target has one
# (the avx2 and avx512 copies), skipping the product's rounding; off, each
# operation rounds as written and the kernels fuse explicitly (lpmon_fma.h).
# The log-loss kernels are accurate to a tolerance, not bit-exact, and keep
# the contraction's speed.
EXACT_SOURCES = {"rowwise", "affine", "calibrate"}


class BuildPerIsa(build_ext):
    """Compile each ISA_SOURCES file once per instruction set and link the objects in."""

    def build_extension(self, ext):
        stem = ext.name.rsplit(".", 1)[-1]
        source = ISA_SOURCES.get(stem)
        if source is not None:
            objects = []
            for isa, flags in ISA_FLAGS.items():
                objects += self.compiler.compile(
                    [source],
                    output_dir=os.path.join(self.build_temp, "isa", isa),
                    macros=[("LP_ISA", isa)],
                    include_dirs=["kernels"],
                    extra_postargs=_compile_args(stem) + flags,
                    depends=[str(p) for p in Path("kernels").glob("*.h")],
                )
            ext.extra_objects = list(ext.extra_objects or []) + objects
        super().build_extension(ext)


def _compile_args(stem):
    return COMPILE_ARGS + (["-ffp-contract=off"] if stem in EXACT_SOURCES else [])


def kernel_extension(path):
    macros = [("LP_X86_VARIANTS", "1")] if X86_64 and path.stem in ISA_SOURCES else []
    return Extension(
        f"lpmon._kernels.{path.stem}",
        [str(path)],
        include_dirs=["kernels"],
        define_macros=macros,
        extra_compile_args=_compile_args(path.stem),
        extra_link_args=LINK_ARGS,
        depends=[str(p) for p in Path("kernels").glob("*.h")] + [str(p) for p in Path("kernels").glob("*.pxi")],
    )


setup(
    # The top-level sql/ folder ships inside the package as lpmon._sql, so an
    # installed lpmon finds its migrations (importlib.resources).
    packages=find_packages(include=["lpmon", "lpmon.*"]) + ["lpmon._sql"],
    package_dir={"lpmon._sql": "sql"},
    # py.typed: lpmon is annotated (PEP 561), so type checkers read it and the
    # compiled kernels' stubs (lpmon/_kernels/*.pyi) in an installed copy too.
    package_data={
        "lpmon._sql": ["*.sql", "migrations/*.sql", "reports/*.sql"],
        "lpmon": ["py.typed"],
        "lpmon._kernels": ["*.pyi"],
        # The templates of reports, mails and the lpmon page (lpmon.report.templating).
        "lpmon.report": ["templates/*.html", "templates/*.txt"],
    },
    cmdclass={"build_ext": BuildPerIsa},
    ext_modules=cythonize(
        [kernel_extension(path) for path in sorted(Path("kernels").glob("*.pyx"))],
        language_level=3,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "cdivision": not DEBUG,
            "initializedcheck": DEBUG,
        },
    ),
)
