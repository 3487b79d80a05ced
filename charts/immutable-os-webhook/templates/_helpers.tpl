{{/* Names are cut to 63 characters (DNS label) as Kubernetes requires for Service names. */}}
{{- define "iow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "iow.fullname" -}}
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

{{- define "iow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "iow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iow.labels" -}}
helm.sh/chart: {{ include "iow.chart" . }}
{{ include "iow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: immutable-os-webhook
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "iow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "iow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "iow.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret the pods mount: tls.crt and tls.key (and ca.crt, unused by the server). */}}
{{- define "iow.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "existingSecret" -}}
{{- .Values.certificates.existingSecret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "iow.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The serving certificate's Certificate object (certManager mode); the CA is injected from it. */}}
{{- define "iow.servingCertificateName" -}}
{{- printf "%s-serving" (include "iow.fullname" .) -}}
{{- end -}}

{{/* The host of webhook.url without port or IPv6 brackets, or "". */}}
{{- define "iow.urlHost" -}}
{{- if .Values.webhook.url -}}
{{- $host := (urlParse .Values.webhook.url).host -}}
{{- $host = regexReplaceAll ":[0-9]+$" $host "" -}}
{{- trimSuffix "]" (trimPrefix "[" $host) -}}
{{- end -}}
{{- end -}}

{{- define "iow.isIP" -}}
{{- if or (regexMatch "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$" .) (contains ":" .) -}}true{{- end -}}
{{- end -}}

{{/* Serving certificate names as YAML {dns: [...], ips: [...]}: every in-cluster name of the Service
     (as certs/ and `webhook certs` make them), the extra names, and the host of webhook.url. */}}
{{- define "iow.servingNames" -}}
{{- $svc := include "iow.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $dns := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $ips := list -}}
{{- range .Values.certificates.extraDNSNames }}{{ $dns = append $dns . }}{{ end -}}
{{- range .Values.certificates.extraIPAddresses }}{{ $ips = append $ips . }}{{ end -}}
{{- $host := include "iow.urlHost" . -}}
{{- if $host -}}
{{- if include "iow.isIP" $host }}{{ $ips = append $ips $host }}{{ else }}{{ $dns = append $dns $host }}{{ end -}}
{{- end -}}
{{- toYaml (dict "dns" ($dns | uniq) "ips" ($ips | uniq)) -}}
{{- end -}}

{{/* The checks that need no cluster: cross-field rules the schema cannot say. */}}
{{- define "iow.validate" -}}
{{- $d := .Values.deployment -}}
{{- if and $d.enabled (le (int $d.terminationGracePeriodSeconds) (add (int $d.preStopSleepSeconds) (int $d.drainSeconds) 1)) -}}
{{- fail (printf "deployment.terminationGracePeriodSeconds (%d) must exceed deployment.preStopSleepSeconds (%d) plus deployment.drainSeconds (%d) plus the server's 1 s last call" (int $d.terminationGracePeriodSeconds) (int $d.preStopSleepSeconds) (int $d.drainSeconds)) -}}
{{- end -}}
{{- if and $d.enabled .Values.podDisruptionBudget.enabled (le (int $d.replicas) (int .Values.podDisruptionBudget.minAvailable)) -}}
{{- fail (printf "deployment.replicas (%d) must exceed podDisruptionBudget.minAvailable (%d), or no node could ever be drained; raise replicas or set podDisruptionBudget.enabled=false" (int $d.replicas) (int .Values.podDisruptionBudget.minAvailable)) -}}
{{- end -}}
{{- if and (not $d.enabled) (not .Values.webhook.url) (or .Values.webhook.mutating.enabled .Values.webhook.validating.enabled) -}}
{{- fail "deployment.enabled=false leaves the webhook configurations without a server: set webhook.url to where the webhook runs, or disable webhook.mutating and webhook.validating" -}}
{{- end -}}
{{- if and (eq .Values.certificates.mode "existingSecret") $d.enabled (not .Values.certificates.existingSecret.name) -}}
{{- fail "certificates.mode=existingSecret needs certificates.existingSecret.name: a Secret in the release namespace with tls.crt and tls.key" -}}
{{- end -}}
{{- if and (eq .Values.certificates.mode "existingSecret") (not .Values.certificates.existingSecret.caBundle) -}}
{{- fail "certificates.mode=existingSecret needs certificates.existingSecret.caBundle: the CA that signed tls.crt (base64 PEM, the last line `python -m webhook certs` prints)" -}}
{{- end -}}
{{- if and (eq .Values.config.steering.strategy "nodeSelector") (not .Values.config.steering.nodeSelector) -}}
{{- fail "config.steering.strategy=nodeSelector needs config.steering.nodeSelector: labels of a general pool" -}}
{{- end -}}
{{- end -}}
