# Prometheus from Debian's package (and promtool beside it), for the compose stack's
# `monitoring` profile, where no registry is reachable. No configuration inside: the compose
# file mounts deploy/prometheus/ (prometheus.yml, alerts.yaml) at /etc/alliance/prometheus.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus \
 && chown prometheus:prometheus /prometheus
USER prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/alliance/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090"]
