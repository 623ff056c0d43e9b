{{/*
Named templates. The sidecar ones take a context with .Values (this chart's values),
.Release and .Chart; from a parent chart pass the subchart's own scope (Helm 3.7+):
  (index .Subcharts "outbox-relay")
or, before Helm 3.7 (set image.tag then: this .Chart has no appVersion):
  (dict "Values" (index .Values "outbox-relay") "Release" .Release "Chart" (dict "Name" "outbox-relay"))
*/}}

{{- define "outbox-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "outbox-relay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "outbox-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "outbox-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outbox-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "outbox-relay.labels" -}}
helm.sh/chart: {{ include "outbox-relay.chart" . }}
{{ include "outbox-relay.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: outbox-relay
{{- end }}

{{- define "outbox-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "outbox-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "outbox-relay.configName" -}}
{{- if .Values.config.existingSecret }}
{{- .Values.config.existingSecret }}
{{- else }}
{{- printf "%s-config" (include "outbox-relay.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* registry/repository:tag, or registry/repository@digest; no registry: the repository
alone. */}}
{{- define "outbox-relay.image" -}}
{{- $repo := .Values.image.repository }}
{{- with .Values.image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion | default "latest") }}
{{- end }}
{{- end }}

{{/* sink.kind: kafka (default), sns or sqs. */}}
{{- define "outbox-relay.sinkKind" -}}
{{- (.Values.sink | default dict).kind | default "kafka" }}
{{- end }}

{{/* Non-empty when the PostgreSQL CA comes from database.caSecret: a verifying sslmode
and no explicit sslrootcert. */}}
{{- define "outbox-relay.mountsCa" -}}
{{- $db := .Values.database }}
{{- if and (has $db.sslmode (list "verify-ca" "verify-full")) (not $db.sslrootcert) }}true{{ end }}
{{- end }}

{{- define "outbox-relay.caDir" -}}/etc/outbox-relay-postgres-ca{{- end }}

{{- define "outbox-relay.caSecretName" -}}
{{- .Values.database.caSecret.name | default (printf "%s-postgres-ca" (include "outbox-relay.fullname" .)) }}
{{- end }}

{{/* The relay configuration (relay.yaml): exactly the relay's configuration keys. */}}
{{- define "outbox-relay.config" -}}
{{- $db := .Values.database }}
{{- $source := dict "host" $db.host "port" (int $db.port) "database" $db.name "user" $db.user "sslmode" $db.sslmode "slot" $db.slot "publication" $db.publication "create_slot" $db.createSlot "create_publication" $db.createPublication "proto_version" (int $db.protoVersion) "status_interval_ms" (int64 $db.statusIntervalMs) "connect_timeout_ms" (int64 $db.connectTimeoutMs) "heartbeat_interval_ms" (int64 $db.heartbeatIntervalMs) }}
{{- $_ := set $source "channel_binding" $db.channelBinding }}
{{- $_ := set $source "allow_password_without_verified_tls" $db.allowPasswordWithoutVerifiedTls }}
{{- if $db.requireAuth }}{{ $_ := set $source "require_auth" $db.requireAuth }}{{ end }}
{{- if $db.sslrootcert }}{{ $_ := set $source "sslrootcert" $db.sslrootcert }}
{{- else if include "outbox-relay.mountsCa" . }}{{ $_ := set $source "sslrootcert" (printf "%s/%s" (include "outbox-relay.caDir" .) $db.caSecret.key) }}
{{- end }}
{{- $o := .Values.outbox }}
{{- $outbox := dict "tables" $o.tables "route" (dict "template" $o.route.template "overrides" $o.route.overrides) "on_invalid" $o.onInvalid "dead_letter_destination" $o.deadLetterDestination "commit_lsn_header" $o.commitLsnHeader }}
{{- if $o.messagesPrefix }}{{ $_ := set $outbox "messages" (dict "prefix" $o.messagesPrefix) }}{{ end }}
{{- $kind := include "outbox-relay.sinkKind" . }}
{{- $sink := dict "kind" $kind }}
{{- if eq $kind "kafka" }}
{{- $props := dict }}
{{- range $k, $v := .Values.kafka.properties }}{{ $_ := set $props $k (toString $v) }}{{ end }}
{{- if .Values.kafka.sasl.mechanism }}{{ $_ := set $props "sasl.mechanism" .Values.kafka.sasl.mechanism }}{{ end }}
{{- if .Values.kafka.sasl.username }}{{ $_ := set $props "sasl.username" .Values.kafka.sasl.username }}{{ end }}
{{- $_ := set $sink "kafka" (dict "brokers" .Values.kafka.brokers "properties" $props) }}
{{- else }}
{{- /* sns or sqs: the same keys (the relay's AwsConfig); region/endpoint only when set */}}
{{- $a := index .Values $kind }}
{{- $aws := dict "fifo" $a.fifo "max_concurrency" (int64 $a.maxConcurrency) "raw_payload" $a.rawPayload "max_message_bytes" (int64 $a.maxMessageBytes) "retry_initial_backoff_ms" (int64 $a.retryInitialBackoffMs) "retry_max_backoff_ms" (int64 $a.retryMaxBackoffMs) "max_retry_elapsed_ms" (int64 $a.maxRetryElapsedMs) "request_timeout_ms" (int64 $a.requestTimeoutMs) "connect_timeout_ms" (int64 $a.connectTimeoutMs) }}
{{- if $a.region }}{{ $_ := set $aws "region" $a.region }}{{ end }}
{{- if $a.endpoint }}{{ $_ := set $aws "endpoint" $a.endpoint }}{{ end }}
{{- $l := $a.largePayloads | default dict }}
{{- if eq ($l.mode | default "reject") "s3" }}
{{- $large := dict "mode" "s3" "bucket" $l.bucket "always" ($l.always | default false) "force_path_style" ($l.forcePathStyle | default false) }}
{{- if $l.prefix }}{{ $_ := set $large "prefix" $l.prefix }}{{ end }}
{{- if $l.thresholdBytes }}{{ $_ := set $large "threshold_bytes" (int64 $l.thresholdBytes) }}{{ end }}
{{- if $l.endpoint }}{{ $_ := set $large "endpoint" $l.endpoint }}{{ end }}
{{- $_ := set $aws "large_payloads" $large }}
{{- end }}
{{- $_ := set $sink $kind $aws }}
{{- end }}
{{- $p := .Values.pipeline }}
{{- $pipeline := dict "inflight_bytes" (int64 $p.inflightBytes) "max_batch_events" (int64 $p.maxBatchEvents) "shutdown_timeout_ms" (int64 $p.shutdownTimeoutMs) "restart_backoff_ms" (int64 $p.restartBackoffMs) "restart_backoff_max_ms" (int64 $p.restartBackoffMaxMs) }}
{{- $t := .Values.telemetry }}
{{- $telemetry := dict "listen" (printf "0.0.0.0:%d" (int $t.port)) "log_format" $t.logFormat "log_level" $t.logLevel }}
{{- $config := dict "source" $source "outbox" $outbox "sink" $sink "pipeline" $pipeline "telemetry" $telemetry }}
{{- /* Only when enabled: a relay.yaml without HA stays as it was (same checksum, no roll on
a chart upgrade; an image from before ha.* still parses it). */}}
{{- $ha := .Values.ha | default dict }}
{{- if $ha.enabled }}
{{- $_ := set $config "ha" (dict "enabled" true "lease_ms" (int64 $ha.leaseMs) "poll_interval_ms" (int64 $ha.pollIntervalMs)) }}
{{- end }}
{{- $config = mustMergeOverwrite $config (deepCopy .Values.config.extra) }}
{{- toYaml $config }}
{{- end }}

{{/* Checksum of the relay configuration the pod mounts, for a pod annotation
(`checksum/outbox-relay-config`): a changed relay.yaml changes the pod template, so the
Deployment rolls. The ConfigMap alone would not restart anything. With
config.existingSecret the chart does not see the content: the checksum then covers only
the Secret's name (roll the pod yourself, or checksum the Secret's own template). */}}
{{- define "outbox-relay.configChecksum" -}}
{{- if .Values.config.existingSecret }}
{{- printf "existingSecret:%s" .Values.config.existingSecret | sha256sum }}
{{- else }}
{{- include "outbox-relay.config" . | sha256sum }}
{{- end }}
{{- end }}

{{/* The path the config volume is mounted at (relay.yaml inside). */}}
{{- define "outbox-relay.configFile" -}}/etc/outbox-relay/relay.yaml{{- end }}

{{/* The relay container's environment (list items, never empty). RELAY_CONFIG lets
`kubectl exec … -- outbox-relay status` (check, config, parked …) find the file without
--config. */}}
{{- define "outbox-relay.env" -}}
- name: RELAY_CONFIG
  value: {{ include "outbox-relay.configFile" . }}
{{- if .Values.database.passwordSecret.name }}
- name: RELAY__SOURCE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.passwordSecret.name }}
      key: {{ .Values.database.passwordSecret.key }}
{{- end }}
{{- /* Only with the Kafka sink: the variable would create a sink.kafka section without brokers. */}}
{{- if and (eq (include "outbox-relay.sinkKind" .) "kafka") .Values.kafka.sasl.passwordSecret .Values.kafka.sasl.passwordSecret.name }}
- name: RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.passwordSecret.name }}
      key: {{ .Values.kafka.sasl.passwordSecret.key }}
{{- end }}
{{- if .Values.aws.region }}
- name: AWS_REGION
  value: {{ .Values.aws.region | quote }}
{{- end }}
{{- if .Values.aws.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ .Values.aws.endpoint | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The relay's volume mounts (list items): the config, the PostgreSQL CA when
database.caSecret supplies it, extraVolumeMounts. */}}
{{- define "outbox-relay.volumeMounts" -}}
- name: outbox-relay-config
  mountPath: /etc/outbox-relay
  readOnly: true
{{- if include "outbox-relay.mountsCa" . }}
- name: outbox-relay-postgres-ca
  mountPath: {{ include "outbox-relay.caDir" . }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A probe from values: empty = none; an httpGet or tcpSocket without a port gets the
container's port name. Context: (dict "probe" … "port" …). */}}
{{- define "outbox-relay.probe" -}}
{{- if .probe }}
{{- $p := deepCopy .probe }}
{{- range $handler := list "httpGet" "tcpSocket" }}
{{- $h := index $p $handler }}
{{- if and $h (not (hasKey $h "port")) }}{{ $_ := set $h "port" $.port }}{{ end }}
{{- end }}
{{- toYaml $p }}
{{- end }}
{{- end }}

{{/* The relay container (without restartPolicy). Context: (dict "root" <chart context>
"sidecar" <bool>): the sidecar form takes its port name and probes from .Values.sidecar
(no readiness probe by default: the pod's readiness is the application's), standalone
from the top-level livenessProbe / readinessProbe on the port named "metrics". */}}
{{- define "outbox-relay.container" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $portName := ternary $v.sidecar.portName "metrics" .sidecar }}
name: outbox-relay
image: {{ include "outbox-relay.image" $root | quote }}
imagePullPolicy: {{ $v.image.pullPolicy }}
args: ["run"]
ports:
  - name: {{ $portName }}
    containerPort: {{ $v.telemetry.port }}
    protocol: TCP
env:
  {{- include "outbox-relay.env" $root | trim | nindent 2 }}
{{- with $v.extraEnvFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  {{- include "outbox-relay.volumeMounts" $root | nindent 2 }}
{{- $probes := ternary $v.sidecar (pick $v "livenessProbe" "readinessProbe") .sidecar }}
{{- range $kind := list "startupProbe" "livenessProbe" "readinessProbe" }}
{{- with include "outbox-relay.probe" (dict "probe" (index $probes $kind) "port" $portName) }}
{{ $kind }}:
  {{- . | nindent 2 }}
{{- end }}
{{- end }}
resources:
  {{- toYaml $v.resources | nindent 2 }}
securityContext:
  {{- toYaml $v.securityContext | nindent 2 }}
{{- end }}

{{/* Sidecar form for a pod's `containers:` list (one list item). */}}
{{- define "outbox-relay.sidecarContainer" -}}
- {{ include "outbox-relay.container" (dict "root" . "sidecar" true) | nindent 2 | trim }}
{{- end }}

{{/* Native sidecar form for a pod's `initContainers:` list (Kubernetes 1.29+): starts
before the app containers, stops after them. */}}
{{- define "outbox-relay.nativeSidecarContainer" -}}
- {{ include "outbox-relay.container" (dict "root" . "sidecar" true) | nindent 2 | trim }}
  restartPolicy: Always
{{- end }}

{{/* The standalone Deployment's relay container (one list item). */}}
{{- define "outbox-relay.standaloneContainer" -}}
- {{ include "outbox-relay.container" (dict "root" . "sidecar" false) | nindent 2 | trim }}
{{- end }}

{{/* The relay's volumes for a pod's `volumes:`: the config, and the PostgreSQL CA when
database.caSecret supplies it. */}}
{{- define "outbox-relay.configVolume" -}}
- name: outbox-relay-config
  {{- if .Values.config.existingSecret }}
  secret:
    secretName: {{ .Values.config.existingSecret }}
    items:
      - key: relay.yaml
        path: relay.yaml
  {{- else }}
  configMap:
    name: {{ include "outbox-relay.configName" . }}
    items:
      - key: relay.yaml
        path: relay.yaml
  {{- end }}
{{- if include "outbox-relay.mountsCa" . }}
- name: outbox-relay-postgres-ca
  secret:
    secretName: {{ include "outbox-relay.caSecretName" . }}
    items:
      - key: {{ .Values.database.caSecret.key }}
        path: {{ .Values.database.caSecret.key }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the Deployment and the example. */}}
{{- define "outbox-relay.podSpecCommon" -}}
serviceAccountName: {{ include "outbox-relay.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The ServiceMonitor's / PodMonitor's first relabeling: job = monitoring.job, the job
the alert rules' up{job=…} select. (The operator's own default job would be the Service's
name or <namespace>/<PodMonitor name>.) User relabelings come after it. */}}
{{- define "outbox-relay.jobRelabeling" -}}
- action: replace
  targetLabel: job
  replacement: {{ .Values.monitoring.job | quote }}
{{- end }}
