{{- define "tfregistry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tfregistry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "tfregistry.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tfregistry.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tfregistry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tfregistry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tfregistry.selector" -}}
app.kubernetes.io/name: {{ include "tfregistry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tfregistry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tfregistry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tfregistry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tfregistry.redisEnabled" -}}
{{- if or .Values.externalRedis.existingSecret .Values.externalRedis.url -}}true{{- end -}}
{{- end -}}

{{/* One credential: (list ctx envName existingSecret key inlineValue) -> an env entry, or nothing. */}}
{{- define "tfregistry.secretEnv" -}}
{{- $ctx := index . 0 -}}
{{- $name := index . 1 -}}
{{- $existing := index . 2 -}}
{{- $key := index . 3 -}}
{{- $inline := index . 4 -}}
{{- if or $existing $inline -}}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ default (include "tfregistry.fullname" $ctx) $existing }}
      key: {{ $key }}
{{- end }}
{{- end -}}

{{/* The chart's Secret data: only the inline values that were given. */}}
{{- define "tfregistry.secretData" -}}
{{- $v := .Values -}}
{{- if and $v.secrets.secretKey (not $v.secrets.existingSecret) }}
{{ $v.secrets.secretKeyKey }}: {{ $v.secrets.secretKey | b64enc }}
{{- end }}
{{- if and $v.secrets.gpgEncryptionKey (not $v.secrets.existingSecret) }}
{{ $v.secrets.gpgEncryptionKeyKey }}: {{ $v.secrets.gpgEncryptionKey | b64enc }}
{{- end }}
{{- if and $v.externalDatabase.url (not $v.externalDatabase.existingSecret) }}
{{ $v.externalDatabase.existingSecretKey }}: {{ $v.externalDatabase.url | b64enc }}
{{- end }}
{{- if and $v.externalRedis.url (not $v.externalRedis.existingSecret) }}
{{ $v.externalRedis.existingSecretKey }}: {{ $v.externalRedis.url | b64enc }}
{{- end }}
{{- with $v.storage.s3 }}{{ if not .existingSecret }}
{{- if .accessKeyId }}
{{ .accessKeyIdKey }}: {{ .accessKeyId | b64enc }}
{{- end }}
{{- if .secretAccessKey }}
{{ .secretAccessKeyKey }}: {{ .secretAccessKey | b64enc }}
{{- end }}
{{- end }}{{ end }}
{{- with $v.storage.azure }}{{ if not .existingSecret }}
{{- if .accountKey }}
{{ .accountKeyKey }}: {{ .accountKey | b64enc }}
{{- end }}
{{- if .connectionString }}
{{ .connectionStringKey }}: {{ .connectionString | b64enc }}
{{- end }}
{{- end }}{{ end }}
{{- with $v.storage.gcs }}{{ if and .credentialsJson (not .existingSecret) }}
{{ .credentialsJsonKey }}: {{ .credentialsJson | b64enc }}
{{- end }}{{ end }}
{{- with $v.auth.oidc }}{{ if and .clientSecret (not .existingSecret) }}
{{ .clientSecretKey }}: {{ .clientSecret | b64enc }}
{{- end }}{{ end }}
{{- with $v.auth.azuread }}{{ if and .clientSecret (not .existingSecret) }}
{{ .clientSecretKey }}: {{ .clientSecret | b64enc }}
{{- end }}{{ end }}
{{- with $v.metrics }}{{ if and .enabled .token (not .existingSecret) }}
{{ .tokenKey }}: {{ .token | b64enc }}
{{- end }}{{ end }}
{{- end -}}

{{/* Required values: fail early with a clear message. */}}
{{- define "tfregistry.validate" -}}
{{- $v := .Values -}}
{{- if not (or $v.externalDatabase.existingSecret $v.externalDatabase.url) -}}
{{- fail "externalDatabase: set existingSecret (a Secret with the PostgreSQL URL under existingSecretKey) or url" -}}
{{- end -}}
{{- if not (or $v.secrets.existingSecret (and $v.secrets.secretKey $v.secrets.gpgEncryptionKey)) -}}
{{- fail "secrets: set existingSecret (with secretKeyKey and gpgEncryptionKeyKey) or both secretKey and gpgEncryptionKey" -}}
{{- end -}}
{{- if and (eq $v.storage.backend "s3") (not $v.storage.s3.bucket) -}}
{{- fail "storage.s3.bucket is required with storage.backend=s3" -}}
{{- end -}}
{{- if and (eq $v.storage.backend "azure") (not $v.storage.azure.container) -}}
{{- fail "storage.azure.container is required with storage.backend=azure" -}}
{{- end -}}
{{- if and (eq $v.storage.backend "gcs") (not $v.storage.gcs.bucket) -}}
{{- fail "storage.gcs.bucket is required with storage.backend=gcs" -}}
{{- end -}}
{{- if and $v.metrics.enabled (not (or $v.metrics.existingSecret $v.metrics.token)) -}}
{{- fail "metrics.enabled: set metrics.existingSecret (with tokenKey) or metrics.token" -}}
{{- end -}}
{{- end -}}

{{/* Environment of every registry container: the ConfigMap plus the credentials. */}}
{{- define "tfregistry.env" -}}
{{- $v := .Values -}}
envFrom:
  - configMapRef:
      name: {{ include "tfregistry.fullname" . }}
env:
{{- include "tfregistry.secretEnv" (list . "TFR_SECRET_KEY" $v.secrets.existingSecret $v.secrets.secretKeyKey $v.secrets.secretKey) | nindent 2 }}
{{- include "tfregistry.secretEnv" (list . "TFR_GPG__ENCRYPTION_KEY" $v.secrets.existingSecret $v.secrets.gpgEncryptionKeyKey $v.secrets.gpgEncryptionKey) | nindent 2 }}
{{- include "tfregistry.secretEnv" (list . "TFR_DATABASE_URL" $v.externalDatabase.existingSecret $v.externalDatabase.existingSecretKey $v.externalDatabase.url) | nindent 2 }}
{{- include "tfregistry.secretEnv" (list . "TFR_REDIS_URL" $v.externalRedis.existingSecret $v.externalRedis.existingSecretKey $v.externalRedis.url) | nindent 2 }}
{{- if eq $v.storage.backend "s3" }}{{ with $v.storage.s3 }}
{{- if or .accessKeyId .existingSecret }}
{{- include "tfregistry.secretEnv" (list $ "TFR_STORAGE__S3__ACCESS_KEY_ID" .existingSecret .accessKeyIdKey .accessKeyId) | nindent 2 }}
{{- include "tfregistry.secretEnv" (list $ "TFR_STORAGE__S3__SECRET_ACCESS_KEY" .existingSecret .secretAccessKeyKey .secretAccessKey) | nindent 2 }}
{{- end }}
{{- end }}{{ end }}
{{- if eq $v.storage.backend "azure" }}{{ with $v.storage.azure }}
{{- if or (eq .auth "account_key") .accountKey }}
{{- include "tfregistry.secretEnv" (list $ "TFR_STORAGE__AZURE__ACCOUNT_KEY" .existingSecret .accountKeyKey .accountKey) | nindent 2 }}
{{- end }}
{{- if or (eq .auth "connection_string") .connectionString }}
{{- include "tfregistry.secretEnv" (list $ "TFR_STORAGE__AZURE__CONNECTION_STRING" .existingSecret .connectionStringKey .connectionString) | nindent 2 }}
{{- end }}
{{- end }}{{ end }}
{{- if eq $v.storage.backend "gcs" }}{{ with $v.storage.gcs }}
{{- include "tfregistry.secretEnv" (list $ "TFR_STORAGE__GCS__CREDENTIALS_JSON" .existingSecret .credentialsJsonKey .credentialsJson) | nindent 2 }}
{{- end }}{{ end }}
{{- if has "oidc" $v.auth.providers }}{{ with $v.auth.oidc }}
{{- include "tfregistry.secretEnv" (list $ "TFR_AUTH__OIDC__CLIENT_SECRET" .existingSecret .clientSecretKey .clientSecret) | nindent 2 }}
{{- end }}{{ end }}
{{- if has "azuread" $v.auth.providers }}{{ with $v.auth.azuread }}
{{- include "tfregistry.secretEnv" (list $ "TFR_AUTH__AZUREAD__CLIENT_SECRET" .existingSecret .clientSecretKey .clientSecret) | nindent 2 }}
{{- end }}{{ end }}
{{- if $v.metrics.enabled }}
{{- include "tfregistry.secretEnv" (list . "TFR_METRICS__TOKEN" $v.metrics.existingSecret $v.metrics.tokenKey $v.metrics.token) | nindent 2 }}
{{- end }}
{{- with $v.extraEnv }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "tfregistry.volumes" -}}
{{- $ctx := .ctx -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ $ctx.Values.tmpSizeLimit }}
- name: data
{{- if and (eq $ctx.Values.storage.backend "local") (not .hook) }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-data" (include "tfregistry.fullname" $ctx)) $ctx.Values.storage.local.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{- define "tfregistry.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/tfregistry
{{- end -}}

{{/* Pod annotations that roll the pods when the configuration or the chart's Secret changes. */}}
{{- define "tfregistry.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include "tfregistry.secretData" . | sha256sum }}
{{- end -}}

{{/* A pod template: (dict "ctx" $ "component" "web" "args" (list ...) "resources" {...} "probes" bool "extra" values) */}}
{{- define "tfregistry.podTemplate" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
metadata:
  labels:
    {{- include "tfregistry.selector" $ctx | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- include "tfregistry.checksums" $ctx | nindent 4 }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "tfregistry.serviceAccountName" $ctx }}
  automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with .restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "tfregistry.image" $ctx }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        {{- toYaml .args | nindent 8 }}
      {{- include "tfregistry.env" $ctx | nindent 6 }}
      {{- if .probes }}
        - name: WEB_CONCURRENCY
          value: {{ $v.web.concurrency | quote }}
        - name: PORT
          value: "8080"
      ports:
        - name: http
          containerPort: 8080
          protocol: TCP
      startupProbe:
        httpGet: {path: /health, port: http}
        periodSeconds: 2
        failureThreshold: 30
      livenessProbe:
        httpGet: {path: /health, port: http}
        periodSeconds: 10
        timeoutSeconds: 3
      readinessProbe:
        httpGet: {path: /ready, port: http}
        periodSeconds: 5
        timeoutSeconds: 5
      {{- end }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "tfregistry.volumeMounts" $ctx | nindent 8 }}
  volumes:
    {{- include "tfregistry.volumes" (dict "ctx" $ctx "hook" (eq .component "migrate")) | nindent 4 }}
  {{- with .extra }}
  {{- with .nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
{{- end -}}

{{/* The migration Job runs before the release's resources exist: what it reads is created as a hook first. */}}
{{- define "tfregistry.preHook" -}}
{{- if .Values.migrations.enabled }}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: "-5"
helm.sh/hook-delete-policy: before-hook-creation
{{- end }}
{{- end -}}
