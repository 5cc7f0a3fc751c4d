# Apache Kafka (KRaft) from its Maven Central jars, for places without registry access.
# Configured like the `apache/kafka` image: every KAFKA_* variable is a server property
# (KAFKA_MIN_INSYNC_REPLICAS -> min.insync.replicas; `__` -> `_`, `___` -> `-`), CLUSTER_ID
# names the cluster (the same on every node); so the compose file can swap either image in.
# Built by deploy/docker/build.sh from a context holding `libs/` (deploy/kafka/pom.xml's
# runtime classpath, fetched by Maven on the build host).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# the JRE's post-install scripts need the man folder the slim image leaves out
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --user-group --home-dir /var/lib/kafka kafka \
 && mkdir -p /var/lib/kafka/data /opt/kafka/config \
 && chown -R kafka:kafka /var/lib/kafka /opt/kafka/config
COPY libs /opt/kafka/libs
COPY kafka-entrypoint.sh /usr/local/bin/kafka-entrypoint.sh
ENV KAFKA_LOG_DIRS=/var/lib/kafka/data \
    KAFKA_HEAP_OPTS="-Xms512m -Xmx512m"
USER kafka
VOLUME ["/var/lib/kafka/data"]
EXPOSE 9092 9093
ENTRYPOINT ["/usr/local/bin/kafka-entrypoint.sh"]
