#!/usr/bin/env bash
# Build the images on the base image (deploy/docker/base-image.sh makes sure it exists):
#   alliance:<version>        the services, the migrations and the command line
#   alliance-kafka:<kafka>    Kafka (KRaft) from its Maven Central jars
#   alliance-postgres:15      PostgreSQL 15 and postgresql-15-hll from Debian's packages
#   alliance-cnpg-postgres:15 the Helm chart's PostgreSQL (values: postgresql.cnpg.imageName):
#                             CloudNativePG's PostgreSQL 15 image ($CNPG_BASE_IMAGE) with
#                             postgresql-15-hll added from its Debian apt sources
#   alliance-prometheus:2     Prometheus from Debian's package (compose profile `monitoring`;
#                             only when asked: deploy/docker/build.sh prometheus)
# each also tagged :latest. Everything downloaded comes through the build host (wheels from
# PyPI at constraints.txt's versions, Kafka's jars through Maven; Debian's packages through
# apt in the build, on the host network), so the images build where no registry is reachable,
# except cnpg: it needs its base image, present or pullable (else it is skipped by default,
# with a warning, and refused when asked for by name).
#   deploy/docker/build.sh [alliance|kafka|postgres|cnpg|prometheus …]
#   (default: alliance, kafka, postgres, and cnpg if its base image is available)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
PY="${PY:-$ROOT/.venv/bin/python}"
CTX="$ROOT/.stack/docker"
BASE="${BASE_IMAGE:-debian:bookworm-slim}"
VERSION="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)"

deploy/docker/base-image.sh "$BASE"

build() {  # name tag context
  echo "building $2"
  docker build --network host --build-arg "BASE=$BASE" -q -t "$2" -t "${2%%:*}:latest" \
    -f "$3/Dockerfile" "$3" >/dev/null
}

alliance() {
  local ctx="$CTX/alliance"
  rm -rf "$ctx" && mkdir -p "$ctx/wheels"
  # this project's wheel and its runtime dependencies, pinned by constraints.txt
  "$PY" -m pip wheel -q --disable-pip-version-check -c constraints.txt -w "$ctx/wheels" "$ROOT"
  rm -rf "$ROOT/build"
  cp deploy/docker/alliance.Dockerfile "$ctx/Dockerfile"
  build alliance "alliance:$VERSION" "$ctx"
}

kafka() {
  local ctx="$CTX/kafka"
  rm -rf "$ctx" && mkdir -p "$ctx"
  mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$ctx/libs" -DincludeScope=runtime
  cp deploy/docker/kafka.Dockerfile "$ctx/Dockerfile"
  cp deploy/docker/kafka-entrypoint.sh "$ctx/"
  build kafka "alliance-kafka:$KAFKA_VERSION" "$ctx"
}

postgres() {
  local ctx="$CTX/postgres"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp deploy/docker/postgres.Dockerfile "$ctx/Dockerfile"
  cp deploy/docker/postgres-entrypoint.sh "$ctx/"
  build postgres "alliance-postgres:15" "$ctx"
}

prometheus() {
  local ctx="$CTX/prometheus"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp deploy/docker/prometheus.Dockerfile "$ctx/Dockerfile"
  build prometheus "alliance-prometheus:2" "$ctx"
}

cnpg() {
  local ctx="$CTX/cnpg" base="${CNPG_BASE_IMAGE:-ghcr.io/cloudnative-pg/postgresql:15}"
  if ! docker image inspect "$base" >/dev/null 2>&1 \
    && ! { [ "${BASE_IMAGE_PULL:-1}" != 0 ] && timeout 120 docker pull -q "$base" >/dev/null 2>&1; }; then
    echo "build.sh: cnpg: base image $base is neither present nor pullable (set CNPG_BASE_IMAGE)" >&2
    return 1
  fi
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp deploy/docker/cnpg.Dockerfile "$ctx/Dockerfile"
  echo "building alliance-cnpg-postgres:15"
  # its own base (CloudNativePG's image), not the Debian one the others build on
  docker build --network host --build-arg "BASE=$base" -q -t "alliance-cnpg-postgres:15" \
    -t "alliance-cnpg-postgres:latest" -f "$ctx/Dockerfile" "$ctx" >/dev/null
}

for image in "${@:-alliance kafka postgres cnpg-if-available}"; do
  for one in $image; do
    case "$one" in
      alliance|kafka|postgres|cnpg|prometheus) "$one" ;;
      cnpg-if-available) cnpg || echo "build.sh: warning: alliance-cnpg-postgres:15 not built" >&2 ;;
      *) echo "build.sh: unknown image $one (alliance, kafka, postgres, cnpg or prometheus)" >&2; exit 2 ;;
    esac
  done
done
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^alliance' | sort
