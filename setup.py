"""Build the placement C extension; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

placement = Extension(
    "rados_py._placement",
    sources=[
        "rados_py/csrc/module.c",
        "rados_py/csrc/mapper.c",
        "rados_py/csrc/builder.c",
        "rados_py/csrc/hash.c",
    ],
    depends=["rados_py/csrc/crush.h", "rados_py/csrc/crush_ln_table.h"],
    extra_compile_args=["-O3", "-std=gnu99", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
    libraries=["m", "pthread"],
)

setup(ext_modules=[placement])
