# CloudNativePG's PostgreSQL 15 image with postgresql-hll (the reports' visitor sketches), for
# the Helm chart's Cluster (`postgresql.cnpg.imageName`). The base is Debian with the PostgreSQL
# project's apt repository, which ships postgresql-15-hll as Debian does. Built by
# `deploy/docker/build.sh cnpg` (and `make images` when the base is present or pullable).
ARG BASE=ghcr.io/cloudnative-pg/postgresql:15
FROM ${BASE}
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15-hll \
 && rm -rf /var/lib/apt/lists/*
# the operator runs PostgreSQL as this user (uid 26, "postgres" in its images)
USER 26
