#!/bin/sh
# Both image stages: make sure the base image has Python 3 (python:3.11-slim does; a CUDA base
# image may not), then create the virtualenv /opt/venv that everything is installed into.
set -eu
if ! command -v python3 >/dev/null 2>&1; then
    apt-get update
    apt-get install -y --no-install-recommends python3 python3-venv
    rm -rf /var/lib/apt/lists/*
fi
python3 -m venv /opt/venv
/opt/venv/bin/pip install --no-cache-dir --upgrade pip
