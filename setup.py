"""Packaging detail pyproject.toml cannot say: the files under deploy/ that commands read at
run time (the Kafka POM and broker configs, the shipped pipeline configs) go into the wheel
as package data under streamfer/deploy/, where streamfer.paths.shipped finds them.

An editable install (a checkout) reads deploy/ in place, so it maps nothing: the layout stays
simple and setuptools has no warning to print."""

import sys

from setuptools import find_packages, setup

EDITABLE = "editable_wheel" in sys.argv
SHIPPED = {} if EDITABLE else {
    "streamfer.deploy.kafka": "deploy/kafka",
    "streamfer.deploy.configs": "deploy/configs",
}

setup(
    packages=[
        *find_packages(include=["streamfer", "streamfer.*"]), "streamfer.bench.configs", *SHIPPED,
    ],
    package_dir={"": ".", **SHIPPED},
    package_data={
        "streamfer.models": ["*.onnx", "*.json", "*.md"],
        "streamfer.bench.configs": ["*.yaml"],
        "streamfer.deploy.kafka": ["*.xml", "*.properties", "*.md"],
        "streamfer.deploy.configs": ["*.yaml"],
    },
)
