"""Builds the native core (native/*.c, one translation unit per stage) as nacrith._native.

The flags matter for the bitstream: -ffp-contract=off forbids fused multiply-add, and no
-march/-ffast-math is ever used, so the CDF computed from the same logits is identical on
every machine (native/NOTES.md). -fvisibility=hidden keeps the calls between the units direct
(no PLT) and exports only PyInit__native.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "nacrith._native",
            sources=["native/module.c", "native/cdf.c", "native/coder.c", "native/ensemble.c",
                     "native/simd.c"],
            depends=["native/cdf.h", "native/coder.h", "native/ensemble.h", "native/simd.h"],
            extra_compile_args=["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math",
                                "-fexcess-precision=standard", "-fvisibility=hidden", "-Wall",
                                "-Wno-unused-parameter"],
        )
    ]
)
