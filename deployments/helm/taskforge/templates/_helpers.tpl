{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "taskforge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "taskforge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels common to every object. */}}
{{- define "taskforge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "taskforge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taskforge
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "api"). */}}
{{- define "taskforge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskforge.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "taskforge.componentLabels" -}}
{{ include "taskforge.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "taskforge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "taskforge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of one service; call with (dict "root" $ "service" "api"). */}}
{{- define "taskforge.image" -}}
{{- $img := .root.Values.image -}}
{{- $digest := get $img.digests .service -}}
{{- if $digest -}}
{{- printf "%s/%s@%s" $img.repositoryPrefix .service $digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $img.repositoryPrefix .service (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "taskforge.secretName" -}}
{{- default (include "taskforge.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Non-secret TASKFORGE_* variables (ConfigMap data). */}}
{{- define "taskforge.configData" -}}
{{- $c := .Values.config -}}
TASKFORGE_ENV: {{ $c.env | quote }}
TASKFORGE_LOG_LEVEL: {{ $c.log.level | quote }}
TASKFORGE_LOG_FORMAT: {{ $c.log.format | quote }}
TASKFORGE_API_ADDR: {{ printf "0.0.0.0:%v" .Values.api.port | quote }}
TASKFORGE_API_PUBLIC_URL: {{ $c.api.publicURL | quote }}
TASKFORGE_API_MIGRATE_ON_START: "false"
TASKFORGE_WORKER_ADMIN_ADDR: {{ printf "0.0.0.0:%v" .Values.worker.port | quote }}
TASKFORGE_WORKER_CONCURRENCY: {{ .Values.worker.concurrency | quote }}
TASKFORGE_WORKER_SERVERS: {{ .Values.worker.servers | quote }}
TASKFORGE_WORKER_SHUTDOWN_TIMEOUT: {{ printf "%vs" .Values.worker.shutdownTimeoutSeconds | quote }}
TASKFORGE_SCHEDULER_ADMIN_ADDR: {{ printf "0.0.0.0:%v" .Values.scheduler.port | quote }}
TASKFORGE_MONITOR_ADDR: {{ printf "0.0.0.0:%v" .Values.monitor.port | quote }}
TASKFORGE_MONITOR_READ_ONLY: {{ .Values.monitor.readOnly | quote }}
TASKFORGE_REDIS_MODE: {{ $c.redis.mode | quote }}
TASKFORGE_REDIS_ADDR: {{ $c.redis.addr | quote }}
TASKFORGE_REDIS_ADDRS: {{ join "," $c.redis.addrs | quote }}
TASKFORGE_REDIS_MASTER_NAME: {{ $c.redis.masterName | quote }}
TASKFORGE_REDIS_USERNAME: {{ $c.redis.username | quote }}
TASKFORGE_REDIS_DB: {{ $c.redis.db | quote }}
TASKFORGE_REDIS_TLS: {{ $c.redis.tls | quote }}
TASKFORGE_AUTH_JWKS_URL: {{ .Values.secrets.jwksURL | quote }}
TASKFORGE_AUTH_JWT_ISSUER: {{ .Values.secrets.jwtIssuer | quote }}
TASKFORGE_AUTH_JWT_AUDIENCE: {{ .Values.secrets.jwtAudience | quote }}
TASKFORGE_CRYPTO_ACTIVE_KEY: {{ $c.crypto.activeKey | quote }}
TASKFORGE_STORAGE_BACKEND: {{ $c.storage.backend | quote }}
TASKFORGE_STORAGE_LOCAL_DIR: {{ $c.storage.localDir | quote }}
TASKFORGE_STORAGE_S3_ENDPOINT: {{ $c.storage.s3.endpoint | quote }}
TASKFORGE_STORAGE_S3_REGION: {{ $c.storage.s3.region | quote }}
TASKFORGE_STORAGE_S3_BUCKET: {{ $c.storage.s3.bucket | quote }}
TASKFORGE_STORAGE_S3_USE_PATH_STYLE: {{ $c.storage.s3.usePathStyle | quote }}
TASKFORGE_SMTP_HOST: {{ $c.smtp.host | quote }}
TASKFORGE_SMTP_PORT: {{ $c.smtp.port | quote }}
TASKFORGE_SMTP_USERNAME: {{ $c.smtp.username | quote }}
TASKFORGE_SMTP_FROM: {{ $c.smtp.from | quote }}
TASKFORGE_SMTP_TLS: {{ $c.smtp.tls | quote }}
TASKFORGE_EGRESS_ALLOW_CIDRS: {{ join "," $c.egress.allowCIDRs | quote }}
{{- range $p := list "price" "notify" "callbacks" "webhooks" "jwks" }}
TASKFORGE_EGRESS_{{ upper $p }}_ALLOW_CIDRS: {{ join "," ((index $c.egress $p | default dict).allowCIDRs | default list) | quote }}
{{- end }}
{{- range $k, $v := $c.extraEnv }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Secret TASKFORGE_* variables (Secret stringData); fails on missing required ones. */}}
{{- define "taskforge.secretData" -}}
{{- $s := .Values.secrets -}}
TASKFORGE_DATABASE_URL: {{ required "secrets.databaseURL is required (or set secrets.existingSecret)" $s.databaseURL | quote }}
{{- if not $s.jwksURL }}
{{- if lt (len $s.jwtSecret) 32 }}
{{- fail "secrets.jwtSecret must be at least 32 characters (or set secrets.jwksURL, or secrets.existingSecret)" }}
{{- end }}
{{- end }}
TASKFORGE_AUTH_JWT_SECRET: {{ $s.jwtSecret | quote }}
TASKFORGE_CRYPTO_KEYS: {{ required "secrets.cryptoKeys is required (or set secrets.existingSecret)" $s.cryptoKeys | quote }}
TASKFORGE_STORAGE_SIGNING_KEY: {{ required "secrets.storageSigningKey is required (or set secrets.existingSecret)" $s.storageSigningKey | quote }}
TASKFORGE_REDIS_PASSWORD: {{ $s.redisPassword | quote }}
TASKFORGE_REDIS_SENTINEL_PASSWORD: {{ $s.redisSentinelPassword | quote }}
TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY: {{ $s.bootstrapAdminKey | quote }}
TASKFORGE_STORAGE_S3_ACCESS_KEY: {{ $s.s3AccessKey | quote }}
TASKFORGE_STORAGE_S3_SECRET_KEY: {{ $s.s3SecretKey | quote }}
TASKFORGE_SMTP_PASSWORD: {{ $s.smtpPassword | quote }}
{{- range $k, $v := $s.extra }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Hash of the configuration, as a pod annotation, so a change rolls the pods. */}}
{{- define "taskforge.configChecksum" -}}
{{- $sec := "" -}}
{{- if not .Values.secrets.existingSecret -}}{{- $sec = include "taskforge.secretData" . -}}{{- end -}}
{{- printf "%s\n%s" (include "taskforge.configData" .) $sec | sha256sum -}}
{{- end -}}

{{/* Pod-level fields shared by every component; call with (dict "root" $ "c" .Values.api). */}}
{{- define "taskforge.podCommon" -}}
{{- if not .noServiceAccount -}}
serviceAccountName: {{ include "taskforge.serviceAccountName" .root }}
{{ end -}}
automountServiceAccountToken: false
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Spread replicas over nodes when possible; call with (dict "root" $ "component" "api"). */}}
{{- define "taskforge.topologySpread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "taskforge.selectorLabels" . | nindent 8 }}
{{- end -}}

{{/* Pod annotations: config checksum, Prometheus scrape hints, user's. Call with (dict "root" $ "c" .Values.api). */}}
{{- define "taskforge.podAnnotations" -}}
checksum/config: {{ include "taskforge.configChecksum" .root }}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .c.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .c.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Environment from the ConfigMap and the Secret. */}}
{{- define "taskforge.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "taskforge.fullname" . }}
  - secretRef:
      name: {{ include "taskforge.secretName" . }}
{{- end -}}

{{/* Probes on /healthz and /readyz of the named port. */}}
{{- define "taskforge.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ . }}}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{/* The results volume (storage.backend=local) and /tmp. */}}
{{- define "taskforge.volumes" -}}
volumes:
  - name: tmp
    emptyDir: {}
  - name: results
    {{- if .Values.persistence.existingClaim }}
    persistentVolumeClaim:
      claimName: {{ .Values.persistence.existingClaim }}
    {{- else }}
    emptyDir: {}
    {{- end }}
{{- end -}}

{{- define "taskforge.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: results
    mountPath: {{ .Values.config.storage.localDir }}
{{- end -}}

{{/* Whether the worker is scaled by KEDA (true), by the HPA, or not at all. */}}
{{- define "taskforge.workerScaler" -}}
{{- $a := .Values.worker.autoscaling -}}
{{- if $a.enabled -}}
{{- if eq $a.mode "keda" -}}keda
{{- else if eq $a.mode "hpa" -}}hpa
{{- else if eq $a.mode "auto" -}}
{{- if .Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject" -}}keda{{- else -}}hpa{{- end -}}
{{- else -}}
{{- fail (printf "worker.autoscaling.mode must be auto, keda or hpa, not %q" $a.mode) -}}
{{- end -}}
{{- end -}}
{{- end -}}
