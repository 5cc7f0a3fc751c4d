#!/usr/bin/env bash
# Start one KRaft node: write server.properties from the KAFKA_* environment (the apache/kafka
# image's convention), format the log directory on first start with CLUSTER_ID and the SCRAM
# users of SCRAM_USERS ("name=password name=password …", SCRAM-SHA-512), run the broker.
set -euo pipefail

: "${CLUSTER_ID:?CLUSTER_ID must be set (the same on every node of the cluster)}"
: "${KAFKA_NODE_ID:?KAFKA_NODE_ID must be set}"
CONFIG=/opt/kafka/config/server.properties
# not server properties: JVM and logging options the image itself reads
SKIP='^(KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS)='

{
  echo "# written by kafka-entrypoint.sh from the container's KAFKA_* environment"
  env | grep -E '^KAFKA_' | grep -Ev "$SKIP" | sort | while IFS='=' read -r name value; do
    key="${name#KAFKA_}"
    key="$(printf '%s' "$key" | tr '[:upper:]' '[:lower:]' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')"
    printf '%s=%s\n' "$key" "$value"
  done
} >"$CONFIG"

cat >/opt/kafka/config/log4j2.properties <<'LOG'
status = warn
name = alliance-kafka
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
LOG

JAVA=(java ${KAFKA_HEAP_OPTS:-} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true} ${KAFKA_OPTS:-}
      -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp '/opt/kafka/libs/*')

log_dir="$(sed -n 's/^log\.dirs=//p' "$CONFIG" | cut -d, -f1)"
if [ ! -f "$log_dir/meta.properties" ]; then
  echo "kafka-entrypoint: formatting $log_dir for cluster $CLUSTER_ID (node $KAFKA_NODE_ID)"
  scram=()
  for user in ${SCRAM_USERS:-}; do
    scram+=(--add-scram "SCRAM-SHA-512=[name=${user%%=*},password=${user#*=}]")
  done
  "${JAVA[@]}" kafka.tools.StorageTool format --ignore-formatted --cluster-id "$CLUSTER_ID" \
    --config "$CONFIG" "${scram[@]}"
fi
exec "${JAVA[@]}" kafka.Kafka "$CONFIG"
