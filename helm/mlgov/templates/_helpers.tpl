{{/* Names, labels and the pieces every mlgov pod shares. */}}

{{- define "mlgov.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlgov.fullname" -}}
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

{{- define "mlgov.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "mlgov.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "api"). */}}
{{- define "mlgov.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlgov.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mlgov.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlgov.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mlgov.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "mlgov.daskImage" -}}
{{- printf "%s:%s" (default .Values.image.repository .Values.dask.image.repository) (default (default .Chart.AppVersion .Values.image.tag) .Values.dask.image.tag) }}
{{- end }}

{{/* The Secret the chart writes for values given inline. */}}
{{- define "mlgov.secretName" -}}
{{- printf "%s-secrets" (include "mlgov.fullname" .) }}
{{- end }}

{{- define "mlgov.databaseSecretName" -}}
{{- default (include "mlgov.secretName" .) .Values.database.existingSecret }}
{{- end }}

{{- define "mlgov.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{- define "mlgov.compute" -}}
{{- if .Values.dask.enabled }}
{{- printf "dask://%s-dask-scheduler:%d" (include "mlgov.fullname" .) (int .Values.dask.scheduler.port) }}
{{- else if .Values.dask.externalScheduler }}
{{- .Values.dask.externalScheduler }}
{{- else }}
{{- "local" }}
{{- end }}
{{- end }}

{{/* "true" when MLGOV_COMPUTE is a tls:// Dask scheduler: its client certificate is mounted (dask.tls). */}}
{{- define "mlgov.daskTLS" -}}
{{- if and (not .Values.dask.enabled) (hasPrefix "tls://" .Values.dask.externalScheduler) }}true{{ end }}
{{- end }}

{{/* Environment of every mlgov container: plain settings from the ConfigMap, secrets from Secrets. */}}
{{- define "mlgov.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "mlgov.fullname" . }}
env:
  - name: MLGOV_DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ include "mlgov.databaseSecretName" . }}
        key: {{ include "mlgov.databaseSecretKey" . }}
  {{- include "mlgov.s3Env" . | nindent 2 }}
  - name: MLGOV_SECRETS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ default (include "mlgov.secretName" .) .Values.keys.existingSecret }}
        key: {{ if .Values.keys.existingSecret }}{{ .Values.keys.existingSecretSecretsKeyKey }}{{ else }}secrets-key{{ end }}
  - name: MLGOV_AUDIT_KEY
    valueFrom:
      secretKeyRef:
        name: {{ default (include "mlgov.secretName" .) .Values.keys.existingSecret }}
        key: {{ if .Values.keys.existingSecret }}{{ .Values.keys.existingSecretAuditKeyKey }}{{ else }}audit-key{{ end }}
{{- if include "mlgov.daskTLS" . }}
  {{- /* Dask's own configuration (dask.config reads DASK_* variables): the Client's TLS context */}}
  - name: DASK_DISTRIBUTED__COMM__TLS__CA_FILE
    value: /etc/mlgov/dask-tls/ca.crt
  - name: DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT
    value: /etc/mlgov/dask-tls/tls.crt
  - name: DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY
    value: /etc/mlgov/dask-tls/tls.key
{{- end }}
{{- end }}

{{/* S3 credentials (also given to Dask workers, which read Parquet straight from the store). */}}
{{- define "mlgov.s3Env" -}}
{{- if not .Values.s3.useWorkloadIdentity -}}
- name: MLGOV_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ default (include "mlgov.secretName" .) .Values.s3.existingSecret }}
      key: {{ if .Values.s3.existingSecret }}{{ .Values.s3.existingSecretAccessKeyIdKey }}{{ else }}s3-access-key-id{{ end }}
- name: MLGOV_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ default (include "mlgov.secretName" .) .Values.s3.existingSecret }}
      key: {{ if .Values.s3.existingSecret }}{{ .Values.s3.existingSecretSecretAccessKeyKey }}{{ else }}s3-secret-access-key{{ end }}
{{- end }}
{{- end }}

{{/* Volumes for the read-only root filesystem: a writable /tmp and MLGOV_HOME. */}}
{{- define "mlgov.volumes" -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .Values.tmpSizeLimit }}
  - name: home
    emptyDir:
      sizeLimit: 64Mi
{{- end }}

{{- define "mlgov.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: home
    mountPath: {{ .Values.config.home }}
{{- end }}

{{/* The client certificate of a tls:// Dask scheduler (API and scheduler pods): a volume and its mount. */}}
{{- define "mlgov.daskTLSVolume" -}}
{{- if include "mlgov.daskTLS" . -}}
- name: dask-tls
  secret:
    secretName: {{ .Values.dask.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "mlgov.daskTLSVolumeMount" -}}
{{- if include "mlgov.daskTLS" . -}}
- name: dask-tls
  mountPath: /etc/mlgov/dask-tls
  readOnly: true
{{- end }}
{{- end }}

{{/* Checksums that roll the pods when their configuration changes. */}}
{{- define "mlgov.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* NetworkPolicy egress: open unless networkPolicy.egress lists rules (then those plus DNS). */}}
{{- define "mlgov.egress" -}}
{{- if .Values.networkPolicy.egress }}
egress:
  - ports:
      - {port: 53, protocol: UDP}
      - {port: 53, protocol: TCP}
  {{- toYaml .Values.networkPolicy.egress | nindent 2 }}
{{- end }}
{{- end }}
