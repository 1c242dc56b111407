{{/* Release-scoped name of every object: <release>-ceryx, or the release name when it already says ceryx. */}}
{{- define "ceryx.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ceryx.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ceryx.labels" -}}
{{ include "ceryx.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ceryx.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "ceryx.apiSecret" -}}
{{- .Values.api.existingSecret | default (printf "%s-api-token" (include "ceryx.fullname" .)) -}}
{{- end -}}

{{/* The Secret with the Redis password: redis.existingSecret, else (in-chart Redis only)
the one the chart generates. Empty for an external Redis without a Secret. */}}
{{- define "ceryx.redisSecret" -}}
{{- if .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecret -}}
{{- else if .Values.redis.embedded.enabled -}}
{{- printf "%s-redis" (include "ceryx.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Labels of the pods that run `ceryx` (proxy, api, controller; not Redis), beside the
selector labels and the component: they serve /metrics on opsPort. */}}
{{- define "ceryx.metricsLabel" -}}
ceryx.dev/metrics: "true"
{{- end -}}

{{/* Where every Ceryx process finds Redis. */}}
{{- define "ceryx.redisEnv" -}}
{{- if .Values.redis.embedded.enabled }}
- name: CERYX_REDIS_URL
  value: {{ printf "redis://%s-redis:6379" (include "ceryx.fullname" .) | quote }}
- name: CERYX_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "ceryx.redisSecret" . }}
      key: {{ .Values.redis.passwordKey }}
{{- if .Values.redis.sentinel.addresses }}
{{- fail "redis.sentinel.addresses names an external Redis: set redis.embedded.enabled=false too (the in-chart Redis is one pod, without sentinels)" }}
{{- end }}
{{- else }}
{{- $sentinel := .Values.redis.sentinel }}
{{- if not (or .Values.redis.url $sentinel.addresses) }}
{{- fail "redis.url is required when redis.embedded.enabled is false (or redis.sentinel.addresses, for a Sentinel-managed Redis)" }}
{{- end }}
{{- with .Values.redis.url }}
- name: CERYX_REDIS_URL
  value: {{ . | quote }}
{{- end }}
{{- if $sentinel.addresses }}
- name: CERYX_REDIS_SENTINELS
  value: {{ join "," $sentinel.addresses | quote }}
- name: CERYX_REDIS_SENTINEL_MASTER
  value: {{ $sentinel.masterName | quote }}
{{- with $sentinel.existingSecret }}
- name: CERYX_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $sentinel.passwordKey }}
{{- end }}
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: CERYX_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.passwordKey }}
{{- end }}
{{- end }}
- name: CERYX_REDIS_PREFIX
  value: {{ .Values.redis.prefix | quote }}
- name: CERYX_REDIS_TIMEOUT
  value: {{ .Values.redis.timeoutMillis | quote }}
{{- if ne .Values.redis.waitReplicas nil }}
- name: CERYX_REDIS_WAIT_REPLICAS
  value: {{ .Values.redis.waitReplicas | quote }}
{{- end }}
- name: CERYX_METRICS_ADDR
  value: {{ printf "0.0.0.0:%d" (int .Values.opsPort) | quote }}
{{- with .Values.metrics.statsdAddr }}
- name: CERYX_STATSD_ADDR
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Pod annotations: Prometheus discovery, then the user's own. */}}
{{- define "ceryx.podAnnotations" -}}
{{- $annotations := dict -}}
{{- if .root.Values.metrics.prometheusAnnotations -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .root.Values.opsPort) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $annotations = merge (deepCopy (.extra | default dict)) $annotations -}}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The REST API's listener and token, for `ceryx run` and `ceryx api` containers. */}}
{{- define "ceryx.apiEnv" -}}
- name: CERYX_API_ADDR
  value: "0.0.0.0:5555"
- name: CERYX_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "ceryx.apiSecret" . }}
      key: {{ .Values.api.tokenKey }}
{{- end -}}

{{- define "ceryx.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: ops}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: {{ .ready }}, port: ops}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}
