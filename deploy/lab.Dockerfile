# syntax=docker/dockerfile:1
# The image of the containerlab topologies in testbed/topologies: merle's
# image (deploy/Dockerfile) with what a lab node runs besides merled (etcd
# for the DSR topology's datastore; ping, curl and python3 to look around
# and serve), and no entrypoint, so that a node's `cmd` is its whole
# command line, as in the namespace runner (`testbed up`).
#
#   docker build -f deploy/Dockerfile -t ghcr.io/merle-net/merle:latest .
#   docker build -f deploy/lab.Dockerfile -t ghcr.io/merle-net/merle-lab:latest .

ARG BASE=ghcr.io/merle-net/merle:latest
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends etcd-server iputils-ping iproute2 procps curl python3 \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT []
CMD ["sleep", "infinity"]
