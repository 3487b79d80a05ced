{{/* One webhook entry: dict root, name, kind (pods | workloads), path, mutating, caBundle. */}}
{{- define "iow.webhook" -}}
{{- $root := .root -}}
{{- $w := $root.Values.webhook -}}
{{- $settings := index $w .kind -}}
- name: {{ .name }}
  admissionReviewVersions: [v1]
  sideEffects: None
  timeoutSeconds: {{ $w.timeoutSeconds }}
  failurePolicy: {{ $settings.failurePolicy }}
  matchPolicy: Equivalent
  {{- if .mutating }}
  # Another mutating webhook may add containers or volumes after us: look again.
  reinvocationPolicy: IfNeeded
  {{- end }}
  clientConfig:
    {{- if $w.url }}
    url: {{ printf "%s%s" (trimSuffix "/" $w.url) .path | quote }}
    {{- else }}
    service:
      name: {{ include "iow.fullname" $root }}
      namespace: {{ $root.Release.Namespace }}
      path: {{ .path }}
      port: {{ $root.Values.service.port }}
    {{- end }}
    {{- with .caBundle }}
    caBundle: {{ . }}
    {{- end }}
  # kube-system and the webhook's own namespace are never judged, whatever else is configured
  # (_namespaces.tpl; `check` and `scan` leave the same namespaces out).
  namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values: {{ concat (include "iow.systemNamespaces" $root | fromJsonArray) (list $root.Release.Namespace) $w.excludeNamespaces | uniq | toJson }}
      {{- with $w.namespaceSelector.matchExpressions }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $w.namespaceSelector.matchLabels }}
    matchLabels:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  {{- if or $w.objectSelector.matchLabels $w.objectSelector.matchExpressions }}
  objectSelector:
    {{- with $w.objectSelector.matchLabels }}
    matchLabels:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $w.objectSelector.matchExpressions }}
    matchExpressions:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  {{- end }}
  rules:
  {{- if eq .kind "pods" }}
    - apiGroups: [""]
      apiVersions: [v1]
      {{- if .mutating }}
      operations: [CREATE]
      {{- else }}
      # An UPDATE can retarget a pod not yet scheduled (tolerations; nodeSelector and affinity while gated).
      operations: [CREATE, UPDATE]
      {{- end }}
      resources: [pods]
      scope: Namespaced
    {{- if not .mutating }}
    # `kubectl debug` adds ephemeral containers to a running pod; judged where it runs, never steered.
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [UPDATE]
      resources: [pods/ephemeralcontainers]
      scope: Namespaced
    {{- end }}
  {{- else }}
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments, daemonsets, statefulsets, replicasets]
      scope: Namespaced
    - apiGroups: [batch]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [jobs, cronjobs]
      scope: Namespaced
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [replicationcontrollers, podtemplates]
      scope: Namespaced
  {{- end }}
  {{- $conditions := $settings.matchConditions }}
  {{- if $w.skipPodsWithoutHostAccess }}
  {{- $conditions = prepend $conditions (dict "name" "host-access" "expression" (include "iow.hostAccessCondition" (dict "root" $root "kind" .kind))) }}
  {{- end }}
  {{- with $conditions }}
  matchConditions:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
CEL that is true when the pod spec asks for any host access an enabled check looks at, so the apiserver
never calls the webhook for the bulk of pods (each call costs ~0.5 ms in the apiserver alone;
docs/performance.md). Each check's CEL comes from the code (_checks.tpl, generated). The spec is bound to
`s` through a one-element list; workloads find it under their template.
*/}}
{{- define "iow.hostAccessCondition" -}}
{{- $checks := .root.Values.config.checks | default dict -}}
{{- $offByDefault := include "iow.checksOffByDefault" . | fromJsonArray -}}
{{- $conditions := include "iow.checkConditions" . | fromJson -}}
{{- $spec := "object.spec" -}}
{{- if eq .kind "workloads" -}}
{{- $spec = "has(object.spec) && has(object.spec.template) ? object.spec.template.spec : has(object.spec) && has(object.spec.jobTemplate) ? object.spec.jobTemplate.spec.template.spec : has(object.template) && has(object.template.spec) ? object.template.spec : {}" -}}
{{- end -}}
{{- $terms := list -}}
{{- range $id := keys $conditions | sortAlpha -}}
{{- $setting := index $checks $id -}}
{{- $on := not (has $id $offByDefault) -}}
{{- if kindIs "bool" $setting -}}
{{- $on = $setting -}}
{{- else if kindIs "map" $setting -}}
{{- $on = ne (toString (index $setting "enabled")) "false" -}}
{{- end -}}
{{- if $on -}}
{{- $terms = append $terms (printf "(%s)" (index $conditions $id)) -}}
{{- end -}}
{{- end -}}
[{{ $spec }}].exists(s, {{ if $terms }}{{ join " || " $terms }}{{ else }}false{{ end }})
{{- end -}}
