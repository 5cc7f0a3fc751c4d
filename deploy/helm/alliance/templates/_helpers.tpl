{{/* Names, labels and the settings every Alliance container shares. */}}

{{- define "alliance.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "alliance.labels" -}}
app.kubernetes.io/name: alliance
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "alliance.selector" -}}
app.kubernetes.io/name: alliance
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "alliance.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Secret with ALLIANCE_SECRET_KEY, ALLIANCE_ADMIN_TOKEN and ALLIANCE_LINK_KEYS. */}}
{{- define "alliance.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "alliance.fullname" .)) -}}
{{- end -}}

{{/* The Kafka bootstrap servers: Strimzi's bootstrap service, or the given ones. */}}
{{- define "alliance.kafkaBootstrap" -}}
{{- if .Values.kafka.strimzi.enabled -}}
{{ include "alliance.fullname" . }}-kafka-bootstrap:9093
{{- else -}}
{{ required "kafka.bootstrap is required when kafka.strimzi.enabled is false" .Values.kafka.bootstrap }}
{{- end -}}
{{- end -}}

{{- define "alliance.pgCluster" -}}
{{ include "alliance.fullname" . }}-pg
{{- end -}}

{{/* The topics of shared/events.py (Topic); tests/deploy/test_helm.py holds them equal. */}}
{{- define "alliance.topics" -}}
{{- /* the event topics expire after ALLIANCE_RETENTION_TOPIC_HOURS (config; default 168), the
same setting the services check their idempotency retention against (docs/retention.md) */ -}}
{{- $hours := index .Values.config "ALLIANCE_RETENTION_TOPIC_HOURS" | default 168 | int64 -}}
{{- $expire := printf "{retention.ms: \"%d\"}" (mul $hours 3600000) -}}
clicks: {{ $expire }}
orders: {{ $expire }}
attributions: {{ $expire }}
pageviews: {{ $expire }}
catalog: {cleanup.policy: compact}
directory: {cleanup.policy: compact, min.compaction.lag.ms: "7776000000"}
dead-letters: {{ $expire }}
privacy: {{ $expire }}
{{- end -}}

{{/* The peers trusted to set X-Forwarded-For (trustedProxies, or config's
ALLIANCE_FORWARDED_ALLOW_IPS), comma-separated; "*" is refused in production, as the services
refuse it at start-up (shared/config.py). */}}
{{- define "alliance.trustedProxies" -}}
{{- $proxies := .Values.trustedProxies | default list -}}
{{- if hasKey .Values.config "ALLIANCE_FORWARDED_ALLOW_IPS" -}}
{{- $proxies = splitList "," (toString (index .Values.config "ALLIANCE_FORWARDED_ALLOW_IPS")) -}}
{{- end -}}
{{- if not $proxies -}}
{{- fail "trustedProxies: list the ingress's addresses or CIDRs (the peers trusted to set X-Forwarded-For)" -}}
{{- end -}}
{{- $env := index .Values.config "ALLIANCE_ENV" | default "production" -}}
{{- range $proxies -}}
{{- if and (eq (trim (toString .)) "*") (eq $env "production") -}}
{{- fail "trustedProxies: \"*\" trusts any peer to choose the client address (X-Forwarded-For); refused with ALLIANCE_ENV=production: list the ingress's addresses or CIDRs" -}}
{{- end -}}
{{- end -}}
{{- join "," $proxies -}}
{{- end -}}

{{/* Who may do what on Kafka: deploy/stack/acls.py (ACL_TABLE), per service: the topics it
writes and reads, its consumers' groups; tests/deploy/test_helm.py holds them equal. */}}
{{- define "alliance.acls" -}}
tracker:
  writes: [catalog, clicks, orders, pageviews]
  reads: [catalog, directory, orders, pageviews]
  groups: []
attribution:
  writes: [attributions, dead-letters]
  reads: [clicks, directory, orders, privacy]
  groups: [attribution]
commission:
  writes: [dead-letters, directory, privacy]
  reads: [attributions, catalog, clicks, orders, pageviews]
  groups: [commission, reports]
{{- end -}}

{{/* A service's Strimzi KafkaUser (its SCRAM user name and Secret); args: root, name. */}}
{{- define "alliance.kafkaUser" -}}
{{ include "alliance.fullname" .root }}-{{ .name }}
{{- end -}}

{{/* A service's Kafka login with the Strimzi cluster: SASL_SSL, SCRAM-SHA-512 as its own
KafkaUser, the cluster CA; args: root, name. */}}
{{- define "alliance.kafkaClientEnv" -}}
{{- if .root.Values.kafka.strimzi.enabled }}
- name: ALLIANCE_KAFKA_SECURITY_PROTOCOL
  value: SASL_SSL
- name: ALLIANCE_KAFKA_SASL_MECHANISM
  value: SCRAM-SHA-512
- name: ALLIANCE_KAFKA_SASL_USERNAME
  value: {{ include "alliance.kafkaUser" . | quote }}
- name: ALLIANCE_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "alliance.kafkaUser" . }}
      key: password
- name: ALLIANCE_KAFKA_SSL_CAFILE
  value: /etc/alliance/kafka-ca/ca.crt
{{- end }}
{{- end -}}

{{/* Environment of every Alliance container: where Kafka and PostgreSQL are, the topics,
the settings of `config`. The migrate job needs no more. */}}
{{- define "alliance.connectionEnv" -}}
{{- range $name, $value := .Values.config }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- $proxies := include "alliance.trustedProxies" . }}
{{- if not (hasKey .Values.config "ALLIANCE_FORWARDED_ALLOW_IPS") }}
- name: ALLIANCE_FORWARDED_ALLOW_IPS
  value: {{ $proxies | quote }}
{{- end }}
- name: ALLIANCE_KAFKA_BOOTSTRAP
  value: {{ include "alliance.kafkaBootstrap" . | quote }}
- name: ALLIANCE_TOPIC_PREFIX
  value: {{ .Values.topics.prefix | quote }}
- name: ALLIANCE_TOPIC_PARTITIONS
  value: {{ .Values.topics.partitions | quote }}
- name: ALLIANCE_TOPIC_REPLICATION
  value: {{ .Values.topics.replicas | quote }}
- name: ALLIANCE_HOST
  value: "0.0.0.0"
- name: ALLIANCE_STATE_DIR
  value: /var/lib/alliance
{{- if .Values.postgresql.cnpg.enabled }}
# CloudNativePG's application secret (user alliance)
- name: ALLIANCE_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "alliance.pgCluster" . }}-app
      key: password
# the password goes into the URL escaped (shared/config.py), whatever its characters
- name: ALLIANCE_DATABASE_URL
  value: "postgresql+asyncpg://alliance@{{ include "alliance.pgCluster" . }}-rw:5432/alliance"
{{- else }}
- name: ALLIANCE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "postgresql.existingSecret (a Secret with the database URL) is required when postgresql.cnpg.enabled is false" .Values.postgresql.existingSecret }}
      key: {{ .Values.postgresql.urlKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The deployment's secrets, for the services. */}}
{{- define "alliance.secretEnv" -}}
{{- range $key := list "ALLIANCE_SECRET_KEY" "ALLIANCE_ADMIN_TOKEN" "ALLIANCE_LINK_KEYS" }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "alliance.secretName" $ }}
      key: {{ $key }}
{{- end }}
{{- end -}}

{{/* The writable folders of a read-only root filesystem. */}}
{{- define "alliance.volumeMounts" -}}
- name: state
  mountPath: /var/lib/alliance
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}
