"""Packaging detail pyproject.toml cannot say: the files under deploy/ that commands read at
run time (the Kafka POM and broker configs, the shipped pipeline configs) go into the wheel
as package data (streamfer/kafka/, streamfer/configs/), where streamfer.paths.shipped finds
them. The configs sit one level below the package, as deploy/configs sits one level below the
checkout, so their model paths (../../streamfer/models/...) resolve in both.

An editable install (a checkout) reads deploy/ in place, so it maps nothing: the layout stays
simple and setuptools has no warning to print."""

import sys

from setuptools import find_packages, setup

EDITABLE = "editable_wheel" in sys.argv
SHIPPED = {} if EDITABLE else {
    "streamfer.kafka": "deploy/kafka",
    "streamfer.configs": "deploy/configs",
}

setup(
    packages=[
        *find_packages(include=["streamfer", "streamfer.*"]), "streamfer.bench.configs", *SHIPPED,
    ],
    package_dir={"": ".", **SHIPPED},
    package_data={
        "streamfer.models": ["*.onnx", "*.json", "*.md"],
        "streamfer.bench.configs": ["*.yaml"],
        "streamfer.kafka": ["*.xml", "*.properties", "*.md"],
        "streamfer.configs": ["*.yaml"],
    },
)
