#!/usr/bin/env bash
# Build the three images on the base image (deploy/docker/base-image.sh makes sure it exists):
#   alliance:<version>        the services, the migrations and the command line
#   alliance-kafka:<kafka>    Kafka (KRaft) from its Maven Central jars
#   alliance-postgres:15      PostgreSQL from Debian's package
#   alliance-prometheus:2     Prometheus from Debian's package (compose profile `monitoring`;
#                             only when asked: deploy/docker/build.sh prometheus)
# each also tagged :latest. Everything downloaded comes through the build host (wheels from
# PyPI at constraints.txt's versions, Kafka's jars through Maven; Debian's packages through
# apt in the build, on the host network), so the images build where no registry is reachable.
#   deploy/docker/build.sh [alliance|kafka|postgres|prometheus …]   (default: the first three)
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

for image in "${@:-alliance kafka postgres}"; do
  for one in $image; do
    case "$one" in
      alliance|kafka|postgres|prometheus) "$one" ;;
      *) echo "build.sh: unknown image $one (alliance, kafka, postgres or prometheus)" >&2; exit 2 ;;
    esac
  done
done
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^alliance' | sort
