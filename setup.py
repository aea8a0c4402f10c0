"""Builds the native core (native/*.c) as nacrith._native.

The flags matter for the bitstream: -ffp-contract=off forbids fused multiply-add, and no
-march/-ffast-math is ever used, so the CDF computed from the same logits is identical on
every machine (native/NOTES.md).
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "nacrith._native",
            sources=["native/nacrith_native.c"],
            depends=["native/ensemble.c", "native/simd.c"],
            extra_compile_args=["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math",
                                "-fexcess-precision=standard", "-Wall", "-Wno-unused-parameter"],
        )
    ]
)
